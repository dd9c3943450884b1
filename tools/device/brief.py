import json, sys
try:
    j = json.load(open(sys.argv[1]))
except Exception as e:
    print('  (no JSON:', e, ')'); sys.exit()
print(f"  {j['device']} {j['dtype']} beam {j['beam_size']} batch {j['batch_size']} audio {j['audio_s']:.1f}s: "
      f"total {j['total_ms']:.0f} ms, enc/window {j['encoder_ms_per_window']:.1f} ms (network {j.get('encoder_network_ms_per_window', float('nan')):.1f}), dec/window {j['decoder_ms_per_window']:.1f} ms, "
      f"ms/step {j['ms_per_step']:.2f}, load {j['load_warm_ms']:.0f} ms, gpu_bytes {j.get('gpu_bytes')} | {j['text'][:70]}")
