"""The near-duplicate threshold (``near_duplicate_cosine``) checked against a perceptual hash: Lite0's pooled
pre-logit features (the ones a run keeps) of the curated photos and of copies made of them (re-saved as JPEG at
several qualities and sizes, centre crops, mirrored), their cosine similarity to the original beside the 64-bit
difference hash's distance (dHash, tests/test_datacheck.py), and the similarity of the photos' distinct pairs.

    python bench/near_duplicate_threshold.py

Loads Lite0 (offline, the lite package); about a minute on two cores. Its figures are in docs/analyses.md."""
import io
import sys
from pathlib import Path

import numpy as np
import timm
import timm.data
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))
from PIL import Image
from conftest import _lite0
from test_datacheck import dhash, hamming
torch.set_num_threads(1)
model=_lite0()
tf=timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
def feat(img):
    with torch.no_grad():
        x=tf(img.convert('RGB'))[None]
        f=model.forward_head(model.forward_features(x), pre_logits=True)[0].numpy().astype(np.float64)
    return f/np.linalg.norm(f)
def jpeg(img,q,scale):
    img=img.convert('RGB'); img=img.resize((int(img.width*scale),int(img.height*scale)),Image.BICUBIC)
    b=io.BytesIO(); img.save(b,'JPEG',quality=q); b.seek(0); return Image.open(b)
def crop(img,share):
    w,h=img.size; s=share**0.5; cw,ch=int(w*s),int(h*s); return img.crop(((w-cw)//2,(h-ch)//2,(w-cw)//2+cw,(h-ch)//2+ch))
def dh(img):
    b=io.BytesIO(); img.convert('RGB').save(b,'PNG'); b.seek(0); return dhash(b)
paths=sorted(Path(__file__).resolve().parent.parent / 'images'.glob('*.png'))
imgs=[Image.open(p).convert('RGB') for p in paths]
F=np.array([feat(i) for i in imgs]); Hs=[dh(i) for i in imgs]
S=F@F.T; n=len(imgs); iu=np.triu_indices(n,1)
print('distinct curated pairs: n',len(iu[0]),'max cos',S[iu].max().round(3),'q99',np.quantile(S[iu],0.99).round(3))
order=np.argsort(-S[iu])[:6]
for k in order: i,j=iu[0][k],iu[1][k]; print('  ',round(S[i,j],3),'dh',hamming(Hs[i],Hs[j]),paths[i].name,paths[j].name)
kinds={'jpeg95 x0.85':lambda i:jpeg(i,95,0.85),'jpeg70 x0.85':lambda i:jpeg(i,70,0.85),'jpeg90 x0.5':lambda i:jpeg(i,90,0.5),'crop 90%':lambda i:crop(i,0.9),'crop 75%':lambda i:crop(i,0.75),'mirror':lambda i:i.transpose(Image.FLIP_LEFT_RIGHT)}
for name,fn in kinds.items():
    c=[];d=[]
    for i,img in enumerate(imgs):
        v=fn(img); c.append(float(feat(v)@F[i])); d.append(hamming(dh(v),Hs[i]))
    c=np.array(c); print(f'{name:14s} cos min {c.min():.3f} median {np.median(c):.3f}  dhash max {max(d)} median {int(np.median(d))}')
