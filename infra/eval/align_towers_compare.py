# Issue 19, item 3 (development only): the align recipe (linear head from ConSE, InfoNCE) on one tower's features for
# the first N Flickr8k train photos (one centre view), dev R@K. 'lite0' reads vemo's own align cache (view 0).
# Usage: compare FEATURES.safetensors|lite0 N (cache paths are this VM's).
import sys, torch, torch.nn as nn, torch.nn.functional as F, numpy as np
from safetensors.torch import load_file
torch.manual_seed(0); torch.set_num_threads(2)
src = open('/work/data/exp/exp.py').read(); exec("def recalls" + src.split("def recalls")[1].split("X = tr")[0])
C = '/root/.cache/vemo/cache/align/'
tr = load_file(C + 'vemo-mini-6000photos-4views-435b0c86788ba742.safetensors')
dv = load_file(C + 'vemo-mini-1000photos-1views-027b507e132d35ad.safetensors')
n = int(sys.argv[2])
if sys.argv[1] == 'lite0':
    X = tr['image.e7'][0::4][:n]; dX = dv['image.e7']
else:
    f = load_file(sys.argv[1]); X = f['train.e7'][:n]; dX = f['dev.e7']
Yi = tr['text.item'].long(); keep = Yi < n; Y = tr['text.e6'][keep]; Yi = Yi[keep]
caps = [[] for _ in range(n)]
for r, i in enumerate(Yi.tolist()): caps[i].append(r)
caps = torch.tensor(caps)
head = nn.Linear(1664, 384)
with torch.no_grad(): head.weight.zero_(); head.bias.zero_(); head.weight[:, 1280:] = torch.eye(384)
ls = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
opt = torch.optim.AdamW(list(head.parameters()) + [ls], lr=1e-3, weight_decay=1e-4)
best = (0, None)
for ep in range(1, 25):
    perm = torch.randperm(n)
    for b in range(0, n, 256):
        it = perm[b:b + 256]
        a = F.normalize(head(X[it]), dim=-1); c = Y[caps[it, torch.randint(0, 5, (len(it),))]]
        lg = a @ c.T * ls.clamp(0, np.log(100)).exp(); lab = torch.arange(len(it))
        loss = (F.cross_entropy(lg, lab) + F.cross_entropy(lg.T, lab)) / 2
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        t2i, i2t = recalls(F.normalize(head(dX), dim=-1), dv['text.e6'], dv['text.item'].long())
    if sum(t2i) + sum(i2t) > best[0]: best = (sum(t2i) + sum(i2t), ep, t2i, i2t)
with torch.no_grad():
    t2i0, i2t0 = recalls(dX[:, 1280:], dv['text.e6'], dv['text.item'].long())
print(sys.argv[1], n, 'conse', [round(v, 3) for v in t2i0], 'best ep', best[1], 't2i', [round(v, 3) for v in best[2]], 'i2t', [round(v, 3) for v in best[3]])
