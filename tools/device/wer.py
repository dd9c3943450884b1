"""Word errors of the texts peers.py brought back (its peers.json), with Whisper's English
normalizer and jiwer as tools/compare_peers.py counts them: all 16 real clips and the 13 of at
most 30 s. Run with the peer venv compare_peers.py makes:

    target/peer-venv/bin/python tools/device/wer.py peers.json [NAME:BEAM:DIR ...]

Each NAME:BEAM:DIR adds an engine whose texts are `transcribe --output-format json` files in DIR
(how stop 14's CPU run of ours came back, before peers.py passed --device cpu)."""
import json, os, sys, wave
import jiwer
from whisper_normalizer.english import EnglishTextNormalizer

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "speech")
norm = EnglishTextNormalizer()
refs = {l.split("\t")[0]: l.split("\t")[1] for l in open(os.path.join(DATA, "refs.tsv")).read().splitlines()
        if l and not l.startswith("#")}
peers = json.load(open(sys.argv[1]))
files = peers["files"]
short = [f for f in files if (lambda w: w.getnframes() / w.getframerate())(wave.open(os.path.join(DATA, f))) <= 30.0]

engines = {}  # (name, beam) -> {file: text}
for key, res in peers["e2e"].items():
    for name, r in res.items():
        if "texts" in r:
            engines[(name, int(key[4:]))] = {os.path.basename(f): t for f, t in r["texts"].items()}
for extra in sys.argv[2:]:
    name, beam, d = extra.split(":", 2)
    engines[(name, int(beam))] = {f: json.load(open(os.path.join(d, f[:-4] + ".json")))["text"] for f in files}

def errors(texts, subset):
    o = jiwer.process_words([norm(refs[f]) for f in subset], [norm(texts[f]) for f in subset])
    return o.substitutions + o.deletions + o.insertions, sum(len(norm(refs[f]).split()) for f in subset)

print(f"{'engine':<16} {'beam':>4} {'all 16':>10} {f'{len(short)} short':>10}")
for (name, beam), texts in sorted(engines.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    (ea, wa), (es, ws) = errors(texts, files), errors(texts, short)
    print(f"{name:<16} {beam:>4} {ea:>4}/{wa:<5} {es:>4}/{ws:<5}")
