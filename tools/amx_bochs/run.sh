#!/usr/bin/env bash
# The AMX kernels on emulated AMX silicon, from any x86-64 Debian machine (issue 12): Bochs 3.0
# (its Sapphire Rapids model has AMX-TILE, AMX-INT8 and AMX-BF16) boots a stock Debian Linux
# 6.12 kernel, which grants the tile state through arch_prctl and XFD as on a real Xeon, and
# runs our binaries there. This checks what the in-process tile emulator cannot: the inline
# asm's encodings, the tile configuration, Linux's permission and first-use trap, and tile
# state kept across context switches between two threads, against an AMX implementation that
# is not ours. It says nothing about speed.
#
#   bash tools/amx_bochs/run.sh          the library's AMX tests with DATTAVANI_REQUIRE_AMX=1
#                                        (they fail unless the CPU's tiles ran), then all its
#                                        unit tests with the tiles on (~5 min the first time)
#   bash tools/amx_bochs/run.sh jfk      samples/jfk.wav, default settings (int8), 2 threads,
#                                        tiles on and off: the JSON must be byte-identical
#                                        (and match this machine's); then --dtype int8-bf16
#                                        and int8-bf16x3 on and off, texts printed (~30 min: Bochs interprets
#                                        every instruction)
#
# Bochs is built from Debian's source package with bochs-amx.patch beside this script; the
# patch adds what Linux needs and Bochs 3.0 lacks (XFD) and fixes five Bochs bugs our kernels
# hit: two in instructions, three in saving and restoring tile state (all described in it).
# Downloads come from deb.debian.org (trixie: Bochs source, kernel) and apt (bookworm: busybox,
# isolinux, xorriso, cpio). Root on Debian; everything else stays under target/amx_bochs.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
MODE=${1:-tests}
W=$REPO/target/amx_bochs
mkdir -p "$W"
MIRROR=http://deb.debian.org/debian
BOCHS_TAR=bochs_3.0+dfsg.orig.tar.xz
BOCHS_SHA256=78f6c73d4a6472d5130a87ab9dc306d02c7c71ed8e25b3a8ef642e2a7acd282b

need=()
for tool in busybox:busybox-static xorriso:xorriso cpio:cpio g++:g++ make:make patch:patch curl:curl xz:xz-utils; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
[ -e /usr/lib/ISOLINUX/isolinux.bin ] || need+=(isolinux)
[ -e /usr/lib/syslinux/modules/bios/ldlinux.c32 ] || need+=(syslinux-common)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "need ${need[*]}" >&2; exit 2; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

# 1. Bochs 3.0 with the patch (about 2 minutes on 2 cores, once).
BOCHS=$W/bochs-3.0/bochs
if [ ! -x "$BOCHS" ] || [ "$W/bochs-3.0/.patched" -ot "$REPO/tools/amx_bochs/bochs-amx.patch" ]; then
  [ -f "$W/$BOCHS_TAR" ] || curl -fsS -o "$W/$BOCHS_TAR" "$MIRROR/pool/main/b/bochs/$BOCHS_TAR"
  echo "$BOCHS_SHA256  $W/$BOCHS_TAR" | sha256sum -c --quiet
  rm -rf "$W/bochs-3.0" && tar xf "$W/$BOCHS_TAR" -C "$W"
  (cd "$W/bochs-3.0" && patch -s -p1 < "$REPO/tools/amx_bochs/bochs-amx.patch" \
    && ./configure -q --enable-x86-64 --enable-avx --enable-evex --enable-amx --enable-pci \
      --enable-cdrom --enable-all-optimizations --with-nogui > configure.log \
    && make -s -j"$(nproc)" > make.log 2>&1 && touch .patched)
fi
# The newest trixie package whose name matches $1 (an awk regex): its pool path.
trixie_deb() {
  curl -fsS "$MIRROR/dists/trixie/main/binary-amd64/Packages.xz" | xz -d \
    | awk -v re="^Package: $1\$" '$0 ~ re {p=1} p&&/^Filename:/{print $2; p=0}' | sort -V | tail -1
}
# The BIOS images, from trixie's bochsbios (the BIOS of Bochs 3.0) and bookworm's vgabios.
if [ ! -f "$W/bios/BIOS-bochs-latest" ]; then
  mkdir -p "$W/bios" "$W/debs"
  curl -fsS -o "$W/bochsbios.deb" "$MIRROR/$(trixie_deb 'bochsbios')"
  (cd "$W" && apt-get download -qq vgabios 2>/dev/null && mv vgabios_*.deb vgabios.deb)
  for deb in "$W/bochsbios.deb" "$W/vgabios.deb"; do dpkg-deb -x "$deb" "$W/debs"; done
  cp "$W/debs/usr/share/bochs/BIOS-bochs-latest" "$W/debs/usr/share/vgabios/vgabios.bin" "$W/bios/"
fi

# 2. Debian trixie's kernel (6.12: the bookworm 6.1 kernel crashed early under Bochs).
if [ ! -f "$W/vmlinuz" ]; then
  deb=$(trixie_deb 'linux-image-6\\.12\\.[0-9]+\\+deb13-amd64-unsigned')
  echo "kernel: $deb"
  curl -fsS -o "$W/kernel.deb" "$MIRROR/$deb"
  rm -rf "$W/kernel" && dpkg-deb -x "$W/kernel.deb" "$W/kernel"
  cp "$W"/kernel/boot/vmlinuz-* "$W/vmlinuz" && rm -rf "$W/kernel" "$W/kernel.deb"
fi

# 3. The guest's files: busybox, our binary with its shared libraries, its commands.
root=$W/root
rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp "$(command -v busybox)" "$root/bin/"
for a in sh mount echo cat grep poweroff sleep uname cmp date head sha256sum; do ln -s busybox "$root/bin/$a"; done
add_binary() {
  cp "$1" "$root/bin/$2"
  for lib in $(ldd "$1" | grep -o '/lib[^ ]*'); do mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; done
}
case $MODE in
  tests)
    bin=$(cargo test --release --lib --no-run --message-format=json 2>/dev/null \
      | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
    add_binary "$bin" lib-tests
    cat > "$root/cmds" <<'EOF'
DATTAVANI_REQUIRE_AMX=1 /bin/lib-tests --test-threads 1 amx_tiles fused_attention::bf16 2>&1
echo "== AMX tests (tiles required): exit $?"
# All the library's unit tests with the tiles on, but the one that reads a fixture from the
# repository (not in the guest).
/bin/lib-tests --test-threads 2 --skip fixture_setup_headers > /tmp/tests.log 2>&1
rc=$?
grep -v '\.\.\. ok$' /tmp/tests.log
echo "== library unit tests: exit $rc"
EOF
    ;;
  jfk)
    cargo build --release --quiet
    add_binary target/release/dattavani-asr dattavani-asr
    cache=${HF_HUB_CACHE:-$HOME/.cache/huggingface/hub}
    [ -d "$cache/models--openai--whisper-tiny.en" ] || target/release/dattavani-asr models pull tiny.en
    mkdir -p "$root/hf" && cp -rL "$cache/models--openai--whisper-tiny.en" "$root/hf/"
    cp samples/jfk.wav "$root/"
    cat > "$root/cmds" <<'EOF'
export HF_HUB_CACHE=/hf DATTAVANI_LOG=dattavani_asr=debug
for amx in 1 0; do
  echo "== AMX=$amx start $(date +%s)"
  DATTAVANI_AMX=$amx /bin/dattavani-asr transcribe --quiet --device cpu --threads 2 \
    --output-format json --output-dir /tmp/amx$amx /jfk.wav 2>&1 | grep -i amx
  echo "== AMX=$amx end $(date +%s): $(head -c 200 /tmp/amx$amx/jfk.json)"
  echo "== AMX=$amx sha256 $(sha256sum < /tmp/amx$amx/jfk.json)"
done
cmp /tmp/amx0/jfk.json /tmp/amx1/jfk.json && echo "== jfk: JSON byte-identical, AMX on and off"
# int8-bf16 and int8-bf16x3: the bf16 attention (plain, split) on tdpbf16ps against AVX-512
# BF16 (equal to f32 rounding, not to the bit, so this compares the text).
for dtype in int8-bf16 int8-bf16x3; do for amx in 1 0; do
  DATTAVANI_AMX=$amx /bin/dattavani-asr transcribe --quiet --device cpu --threads 2 --dtype $dtype \
    --output-format txt --output-dir /tmp/$dtype-amx$amx /jfk.wav 2>&1 | grep -i amx
  echo "== $dtype AMX=$amx: $(cat /tmp/$dtype-amx$amx/jfk.txt)"
done; done
EOF
    ;;
  *) echo "usage: $0 [tests|jfk]" >&2; exit 2 ;;
esac
cat > "$root/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "== guest: $(uname -r), $(grep -m1 'model name' /proc/cpuinfo)"
echo "== amx flags: $(grep -m1 -o 'amx[a-z0-9_]*' /proc/cpuinfo | tr '\n' ' ')"
cd /tmp
. /cmds
echo "== guest done"
sleep 2; poweroff -f
EOF
chmod +x "$root/init"

# 4. A bootable ISO: isolinux, the kernel, the files as its initramfs.
iso=$W/iso
rm -rf "$iso" && mkdir -p "$iso/isolinux"
cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$iso/isolinux/"
cp "$W/vmlinuz" "$iso/vmlinuz"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$iso/initrd.gz")
# no5lvl: Bochs's SMM restore rejects CR4.LA57; nosmp: one emulated core is enough.
cat > "$iso/isolinux/isolinux.cfg" <<'EOF'
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  KERNEL /vmlinuz
  APPEND initrd=/initrd.gz console=ttyS0,115200 mitigations=off panic=-1 lsm=capability no5lvl nosmp nokaslr quiet
EOF
xorriso -as mkisofs -quiet -o "$W/guest.iso" -b isolinux/isolinux.bin -c isolinux/boot.cat \
  -no-emul-boot -boot-load-size 4 -boot-info-table "$iso" 2>/dev/null

# 5. Boot it; the guest's console is the serial port, written to serial.log.
cat > "$W/bochsrc" <<EOF
megs: 2048
cpu: model=sapphire_rapids, count=1, ips=400000000, reset_on_triple_fault=0
romimage: file=$W/bios/BIOS-bochs-latest
vgaromimage: file=$W/bios/vgabios.bin
ata0-master: type=cdrom, path=$W/guest.iso, status=inserted
boot: cdrom
com1: enabled=1, mode=file, dev=$W/serial.log
display_library: nogui
log: $W/bochs.log
clock: sync=none, time0=local
pci: enabled=1, chipset=i440fx
EOF
rm -f "$W/serial.log"
start=$(date +%s)
timeout "${AMX_BOCHS_TIMEOUT:-3600}" "$BOCHS" -q -f "$W/bochsrc" > "$W/bochs.stdout" 2>&1 || true
echo "Bochs ran $(( $(date +%s) - start )) s"
sed -n '/^== guest:/,/^== guest done/p' "$W/serial.log"
grep -q '^== guest done' "$W/serial.log" || { echo "the guest did not finish (see $W/serial.log, $W/bochs.log)"; exit 1; }
case $MODE in
  tests) grep -q '^== AMX tests (tiles required): exit 0' "$W/serial.log" \
           && grep -q '^== library unit tests: exit 0' "$W/serial.log" ;;
  jfk)
    grep -q '^== jfk: JSON byte-identical' "$W/serial.log"
    # And the same bytes as this machine's own run.
    target/release/dattavani-asr transcribe --quiet --device cpu --threads 2 \
      --output-format json --output-dir "$W/native" samples/jfk.wav
    native=$(sha256sum < "$W/native/jfk.json")
    grep -q "^== AMX=1 sha256 $native" "$W/serial.log" && echo "== jfk: the same JSON as this machine's"
    ;;
esac
