import json, sys, hashlib
r = json.load(open(sys.argv[1])); st = open(sys.argv[2], 'rb').read()
n = int.from_bytes(st[:8], 'little'); body = st[8 + n:]
out = bytearray()
for s in r["segments"]:
    if s[0] == "lit": out += bytes.fromhex(s[1])
    elif s[0] == "zero": out += bytes(s[1])
    else: out += body[s[1]:s[1] + s[2]]
assert hashlib.sha256(out).hexdigest() == r["sha256"], "model.bin rebuild mismatch"
open(sys.argv[3], 'wb').write(out); print("model.bin rebuilt", len(out))
