# Recipe that rebuilds CTranslate2's model.bin from the safetensors body our importer wrote:
# segments are literal bytes, slices of the safetensors body, or zero runs. Verified by rebuilding.
import json, struct, sys, hashlib
mb = open(sys.argv[1], 'rb').read()
st = open(sys.argv[2], 'rb').read()
n = int.from_bytes(st[:8], 'little'); body = st[8 + n:]
segs = []; lit = bytearray()
def flush():
    global lit
    if lit: segs.append(["lit", lit.hex()]); lit = bytearray()
def ref(chunk):
    if chunk.count(0) == len(chunk): flush(); segs.append(["zero", len(chunk)]); return True
    i = body.find(chunk)
    if i >= 0: flush(); segs.append(["st", i, len(chunk)]); return True
    return False
p = 0
def rd(fmt):
    global p
    v = struct.unpack_from(fmt, mb, p); p += struct.calcsize(fmt); return v
def rdstr():
    global p
    (l,) = rd('<H'); s = mb[p:p + l]; p += l; return s
start = p
(version,) = rd('<I')
if version >= 2: rdstr(); rd('<I')
(nv,) = rd('<I')
lit += mb[start:p]
for _ in range(nv):
    h0 = p
    name = rdstr(); (rank,) = rd('<B'); dims = rd('<%dI' % rank)
    if version >= 4: dt, nbytes = rd('<BI')
    else:
        isz, nel = rd('<BI'); nbytes = isz * nel
    lit += mb[h0:p]
    data = mb[p:p + nbytes]; p += nbytes
    if len(data) >= 64 and ref(data): continue
    ok = False
    for parts in (3, 2):
        if len(data) >= 64 and len(data) % parts == 0:
            k = len(data) // parts
            trial = [data[i * k:(i + 1) * k] for i in range(parts)]
            if all((c.count(0) == len(c)) or body.find(c) >= 0 for c in trial):
                for c in trial: ref(c)
                ok = True; break
    if not ok:
        lit += data
        print("literal", name.decode(errors='replace'), len(data), file=sys.stderr)
lit += mb[p:]; flush()
json.dump({"segments": segs, "sha256": hashlib.sha256(mb).hexdigest(), "size": len(mb)}, open(sys.argv[3], 'w'))
