# Recipe sketch for issue 19 (development only, not part of the product): tune copies of
# MiniLM's top text layers (over the shared lower layers, as the NER branch does) contrastively
# against the cached image features of `vemo train align` (image exit 7 input), with a linear
# image head, symmetric InfoNCE, Flickr8k train; dev recall each epoch. torch==2.15.0,
# transformers==4.57.1, tokenizers==0.22.2, CPU. Figures in jobs/models/README.md.
#   python3 infra/eval/align_text_tune.py SHARED_LAYERS "tune=3,lr_text=2e-5,epochs=12" ...
# Paths below are this VM's: the bundle, the two feature caches, Flickr8k train and dev.
import sys, json, time, torch, torch.nn as nn, torch.nn.functional as F, numpy as np
from safetensors.torch import load_file
from transformers import BertModel, BertConfig
from tokenizers import Tokenizer
torch.manual_seed(0); torch.set_num_threads(2)
B = '/root/.cache/vemo/models/vemo-mini/text/'
cfg = BertConfig.from_json_file(B + 'config.json')
bert = BertModel(cfg, add_pooling_layer=False)
sd = load_file(B + 'model.safetensors'); sd = {k.removeprefix('bert.'): v for k, v in sd.items()}
print(bert.load_state_dict(sd, strict=False))
bert.eval()
tok = Tokenizer.from_file(B + 'tokenizer.json'); tok.enable_truncation(64); tok.enable_padding()
def caps(d):
    import glob
    f = glob.glob(d + '/captions_*.json')[0]; c = json.load(open(f))
    return [a['caption'].strip() for a in c['annotations']]
SHARED = int(sys.argv[1]) if len(sys.argv) > 1 else 3
def hidden(texts):
    outs, masks = [], []
    with torch.no_grad():
        for i in range(0, len(texts), 256):
            enc = tok.encode_batch(texts[i:i+256])
            ids = torch.tensor([e.ids for e in enc]); m = torch.tensor([e.attention_mask for e in enc])
            h = bert.embeddings(input_ids=ids)
            ext = (1.0 - m[:, None, None, :].float()) * -1e9
            for l in bert.encoder.layer[:SHARED]: h = l(h, attention_mask=ext)[0]
            L = 64; pad = L - h.shape[1]
            outs.append(F.pad(h, (0, 0, 0, pad))); masks.append(F.pad(m, (0, pad)))
    return torch.cat(outs), torch.cat(masks)
tr = load_file('/root/.cache/vemo/cache/align/vemo-mini-6000photos-4views-435b0c86788ba742.safetensors')
dv = load_file('/root/.cache/vemo/cache/align/vemo-mini-1000photos-1views-027b507e132d35ad.safetensors')
t0 = time.time()
Htr, Mtr = hidden(caps('/work/data/flickr8k-train')); Hdv, Mdv = hidden(caps('/work/shared/data/flickr8k-dev'))
L = int(max(Mtr.sum(1).max(), Mdv.sum(1).max())); Htr, Mtr, Hdv, Mdv = Htr[:, :L], Mtr[:, :L], Hdv[:, :L], Mdv[:, :L]
print('hidden', Htr.shape, Hdv.shape, f'{time.time()-t0:.0f}s', flush=True)
X = tr['image.e7']; Xi = tr['image.item'].long(); Yi = tr['text.item'].long()
dX = dv['image.e7']; dYi = dv['text.item'].long()
N = int(Xi.max()) + 1
rows_of = [[] for _ in range(N)]; caps_of = [[] for _ in range(N)]
for r, i in enumerate(Xi.tolist()): rows_of[i].append(r)
for r, i in enumerate(Yi.tolist()): caps_of[i].append(r)
rows_of = torch.tensor(rows_of); caps_of = torch.tensor(caps_of)
def recalls(img, cap, cap_item):
    sim = cap @ img.T; own = sim[torch.arange(len(cap)), cap_item]
    rank = (sim > own[:, None]).sum(1); t2i = [(rank < k).float().mean().item() for k in (1, 5, 10)]
    best = torch.full((img.shape[0],), -1e9).scatter_reduce(0, cap_item, own, reduce='amax')
    r2 = (sim.T > best[:, None]).sum(1); i2t = [(r2 < k).float().mean().item() for k in (1, 5, 10)]
    return t2i, i2t
import copy
def run(tune=3, lr_text=2e-5, lr=1e-3, wd=1e-4, bs=256, epochs=12, label=''):
    layers = nn.ModuleList([copy.deepcopy(l) for l in bert.encoder.layer[SHARED:]])
    for i, l in enumerate(layers):
        for p in l.parameters(): p.requires_grad = i >= len(layers) - tune
    head = nn.Linear(1664, 384)
    with torch.no_grad(): head.weight.zero_(); head.bias.zero_(); head.weight[:, 1280:] = torch.eye(384)
    ls = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
    tp = [p for p in layers.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{'params': list(head.parameters()) + [ls], 'lr': lr}, {'params': tp, 'lr': lr_text, 'weight_decay': 0.01}], weight_decay=wd)
    def enc(h, m):
        ext = (1.0 - m[:, None, None, :].float()) * -1e9
        for l in layers: h = l(h, attention_mask=ext)[0]
        mf = m[:, :, None].float(); return F.normalize((h * mf).sum(1) / mf.sum(1), dim=-1)
    def dev():
        layers.eval()
        with torch.no_grad():
            c = torch.cat([enc(Hdv[i:i+500], Mdv[i:i+500]) for i in range(0, len(Hdv), 500)])
            return recalls(F.normalize(head(dX), dim=-1), c, dYi)
    t2i, i2t = dev(); print(f'{label} ep 0 t2i {t2i} i2t {i2t}', flush=True)
    best = (0, None); t0 = time.time()
    for ep in range(1, epochs + 1):
        layers.train(); perm = torch.randperm(N)
        for b in range(0, N, bs):
            it = perm[b:b+bs]
            xr = rows_of[it, torch.randint(0, rows_of.shape[1], (len(it),))]
            yr = caps_of[it, torch.randint(0, 5, (len(it),))]
            a = F.normalize(head(X[xr]), dim=-1)
            m = Mtr[yr]; l = int(m.sum(1).max())
            c = enc(Htr[yr][:, :l], m[:, :l])
            logits = a @ c.T * ls.clamp(0, np.log(100)).exp(); lab = torch.arange(len(it))
            loss = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2
            opt.zero_grad(); loss.backward(); opt.step()
        t2i, i2t = dev(); s = sum(t2i) + sum(i2t)
        if s > best[0]: best = (s, ep)
        print(f'{label} ep {ep} loss {loss.item():.3f} t2i {t2i[0]:.3f}/{t2i[1]:.3f}/{t2i[2]:.3f} i2t {i2t[0]:.3f}/{i2t[1]:.3f}/{i2t[2]:.3f} ({time.time()-t0:.0f}s)', flush=True)
for spec in sys.argv[2:]:
    run(label=spec, **eval(f'dict({spec})'))
