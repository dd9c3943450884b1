#!/bin/bash
# Device call 1 of 3: the machine's facts, Vulkan on the NVIDIA driver through our own binary's
# adapter list; unpack the low bytes of tiny.en's f16 weights (the high bytes come in call 2).
exec > >(tee $OUT/run1.log) 2>&1
set -x
D=$PWD/.devc1
ux() { if command -v xz >/dev/null; then xz -T0 -dc "$1" > "$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"), 1 << 22)' "$1" "$2"; fi; }
pwd; lscpu > $OUT/lscpu.txt; lscpu -p=CPU,CORE,SOCKET,NODE > $OUT/lscpu_p.txt
grep -E "Model name|Socket|Core|Thread|L2|L3|NUMA node0|Hypervisor" $OUT/lscpu.txt
grep -m1 -o -w -E 'amx_[a-z0-9]+|avx512_?[a-z0-9_]+|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
nproc; free -g | head -2; cat /etc/os-release | head -2; ldd --version | head -1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
# The NVIDIA ICD (libGLX_nvidia) needs libglvnd and its own folder on the library path.
for f in .gl/*.deb; do dpkg -x $f /; done
[ -d /usr/local/nvidia/lib64 ] && echo /usr/local/nvidia/lib64 > /etc/ld.so.conf.d/zz-nvidia.conf
ldconfig
ldconfig -p | grep -i vulkan
ls /usr/local/nvidia/share/vulkan/icd.d/ /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d 2>&1
mkdir -p /root/dv
ux $D/lo.xz /root/dv/st_lo & lo_pid=$!
ux $D/dattavani-asr.xz /root/dv/dattavani-asr && chmod +x /root/dv/dattavani-asr
/root/dv/dattavani-asr devices
if ! /root/dv/dattavani-asr devices 2>&1 | grep -qi nvidia; then
  export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  /root/dv/dattavani-asr devices
fi
wait "$lo_pid"; ls -la /root/dv   # not a bare `wait`: it would also wait for the tee above
