//! The checks every long-form transcript must pass, whatever produced it.
//!
//! Use with `#[path = "common/timeline.rs"] mod timeline;`.

use dattavani_asr::Transcript;

/// Segments in order (each within 20 ms of the previous end), inside the audio, and a text that
/// is not unusually compressible (no repeated-phrase loop).
pub fn assert_sane(t: &Transcript, name: &str) {
    let mut prev_end = 0.0;
    for s in &t.segments {
        assert!(
            s.start <= s.end,
            "{name}: segment {} ends before it starts",
            s.id
        );
        assert!(
            s.start + 1e-6 >= prev_end - 0.02,
            "{name}: segment {} starts at {} before the previous end {prev_end}",
            s.id,
            s.start
        );
        assert!(
            s.end <= t.duration + 0.02,
            "{name}: segment {} ends past the audio ({} > {})",
            s.id,
            s.end,
            t.duration
        );
        prev_end = s.end;
    }
    let ratio = dattavani_asr::testing::decode::compression_ratio(&t.text);
    assert!(ratio < 2.4, "{name}: compression ratio {ratio}");
}
