# Recipe sketches for `vemo train align` (development only, not part of the product): the same
# training loop as models/src/models/alignment.rs, in PyTorch (torch==2.15.0, CPU), on the
# feature caches `vemo train align` writes ($VEMO_HOME/cache/align/*.safetensors), so that
# variants can be compared in seconds. Figures are in jobs/models/README.md.
#   python3 infra/eval/align_sketch.py TRAIN_CACHE DEV_CACHE "epochs=15" "epochs=15,cap_head=True"
# Each argument is one run's keyword arguments to run(). The feat='logits'/'grid'/'both' variants
# read tensors image.e100 (ImageNet logits) and image.e101 (a 2x2 grid of the head's map) that
# only a temporary patch of align_features.rs exported; the shipped cache does not hold them.
import sys, torch, torch.nn as nn, torch.nn.functional as F, numpy as np, time
from safetensors.torch import load_file
torch.manual_seed(0); torch.set_num_threads(1)
tr = load_file(sys.argv[1]); dv = load_file(sys.argv[2])
def recalls(img, cap, cap_item):
    sim = cap @ img.T  # (C, N)
    own = sim[torch.arange(len(cap)), cap_item]
    rank = (sim > own[:, None]).sum(1)
    t2i = [(rank < k).float().mean().item() for k in (1, 5, 10)]
    # i2t
    simT = sim.T
    N = img.shape[0]
    best = torch.full((N,), -1e9)
    best = best.scatter_reduce(0, cap_item, own, reduce="amax")
    r2 = (simT > best[:, None]).sum(1)
    i2t = [(r2 < k).float().mean().item() for k in (1, 5, 10)]
    return t2i, i2t
X = tr["image.e7"]; Xi = tr["image.item"].long(); Y = tr["text.e6"]; Yi = tr["text.item"].long()
Y3 = tr["text.e3"]; dY3 = dv["text.e3"]
dX = dv["image.e7"]; dY = dv["text.e6"]; dYi = dv["text.item"].long()
N = int(Xi.max()) + 1
rows_of = [[] for _ in range(N)]; caps_of = [[] for _ in range(N)]
for r, i in enumerate(Xi.tolist()): rows_of[i].append(r)
for r, i in enumerate(Yi.tolist()): caps_of[i].append(r)
rows_of = torch.tensor(rows_of); caps_of = torch.tensor(caps_of)
def Z(a, ref):
    m, sd = ref.mean(0), ref.std(0) + 1e-6
    return (a - m) / sd / (ref.shape[1] ** 0.5)
def cells(g):
    return torch.cat([F.normalize(c, dim=-1) for c in g.split(1280, 1)], 1) * 0.5
def run(hard=0.0, cap="", capdrop=0.0, textcat=False, kind="linear", hidden=1024, lr=1e-3, wd=1e-4, bs=256, epochs=30, cap_head=False, drop=0.0, views=None, feat=None, label=""):
    x, dx = X, dX
    if feat == "conse": x, dx = X[:, 1280:], dX[:, 1280:]
    if feat == "pooled": x, dx = X[:, :1280], dX[:, :1280]
    if feat in ("logits", "grid", "both"):
        blocks, dblocks = [X], [dX]
        if feat in ("logits", "both"):
            blocks.append(Z(tr["image.e100"], tr["image.e100"])); dblocks.append(Z(dv["image.e100"], tr["image.e100"]))
        if feat in ("grid", "both"):
            g, dg = cells(tr["image.e101"]), cells(dv["image.e101"])
            blocks.append(g); dblocks.append(dg)
        x, dx = torch.cat(blocks, 1), torch.cat(dblocks, 1)
    din = x.shape[1]
    if kind == "linear":
        head = nn.Linear(din, 384)
        with torch.no_grad():
            head.weight.zero_(); head.bias.zero_()
            if feat in (None, "logits", "grid", "both"): head.weight[:, 1280:1664] = torch.eye(384)
            elif feat == "conse": head.weight[:] = torch.eye(384)
            else: nn.init.normal_(head.weight, std=din ** -0.5)
    else:
        head = nn.Sequential(nn.Dropout(drop), nn.Linear(din, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, 384))
    params = list(head.parameters())
    ch = None
    Yin, dYin = (torch.cat([Y3, Y], 1), torch.cat([dY3, dY], 1)) if textcat else (Y, dY)
    cin = Yin.shape[1]
    if cap_head:
        lin = nn.Linear(cin, 384)
        with torch.no_grad(): lin.weight.zero_(); lin.weight[:, cin-384:] = torch.eye(384); lin.bias.zero_()
        if cap == "mlp":
            class Res(nn.Module):
                def __init__(s):
                    super().__init__(); s.lin = lin; s.mlp = nn.Sequential(nn.Dropout(capdrop), nn.Linear(cin, 1024), nn.GELU(), nn.Linear(1024, 384))
                    nn.init.zeros_(s.mlp[3].weight); nn.init.zeros_(s.mlp[3].bias)
                def forward(s, y): return s.lin(y) + s.mlp(y)
            ch = Res()
        else:
            ch = nn.Sequential(nn.Dropout(capdrop), lin)
        params += list(ch.parameters())
    ls = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32)); params.append(ls)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    best = (0, None); t0 = time.time()
    nv = rows_of.shape[1] if views is None else views
    for ep in range(1, epochs + 1):
        head.train()
        perm = torch.randperm(N)
        for b in range(0, N, bs):
            it = perm[b:b + bs]
            if len(it) < 2: continue
            xr = rows_of[it, torch.randint(0, nv, (len(it),))]
            yr = caps_of[it, torch.randint(0, 5, (len(it),))]
            a = F.normalize(head(x[xr]), dim=-1)
            yy = Yin[yr]
            if ch is not None: yy = ch(yy)
            c = F.normalize(yy, dim=-1)
            logits = a @ c.T * ls.clamp(0, np.log(100)).exp()
            lab = torch.arange(len(it))
            loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
            if hard > 0:
                sim = a @ c.T; pos = sim.diag()
                mask = torch.eye(len(it), dtype=torch.bool)
                neg = sim.masked_fill(mask, -1e9)
                loss = loss + hard * ((0.2 - pos + neg.max(1).values).clamp(min=0).mean() + (0.2 - pos + neg.max(0).values).clamp(min=0).mean())
            opt.zero_grad(); loss.backward(); opt.step()
        head.eval()
        with torch.no_grad():
            a = F.normalize(head(dx), dim=-1)
            yy = dYin if ch is None else ch(dYin)
            t2i, i2t = recalls(a, F.normalize(yy, dim=-1), dYi)
        s = sum(t2i) + sum(i2t)
        if s > best[0]: best = (s, (ep, t2i, i2t))
    ep, t2i, i2t = best[1]
    print(f"{label:40s} best ep {ep:2d} t2i {t2i[0]:.3f}/{t2i[1]:.3f}/{t2i[2]:.3f} i2t {i2t[0]:.3f}/{i2t[1]:.3f}/{i2t[2]:.3f} ({time.time()-t0:.0f}s)", flush=True)
for spec in sys.argv[3:]:
    kw = eval(f"dict({spec})")
    run(label=spec, **kw)
