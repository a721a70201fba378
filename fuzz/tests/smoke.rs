//! The fuzz smoke run of CI (`cargo test`): every target for a few thousand inputs from its
//! committed seed corpus, with no finding; and the seeds themselves parse (a seed the
//! reader refuses only ever tests its error path).
//!
//! One test function: the panic hook and the allocation counters are process-wide, and the
//! test harness would run several tests at once.

use avsc_fuzz::engine::{describe_input, load_corpus};
use avsc_fuzz::{fuzz, Options, Target};
use avsc_shared::decode::{plan_audio_trim, plan_video_frames};

#[global_allocator]
static ALLOC: avsc_fuzz::alloc::CountingAlloc = avsc_fuzz::alloc::CountingAlloc;

/// Inputs per target: a few seconds in a debug build.
const EXECS: u64 = 20_000;

#[test]
fn seeds_parse_and_every_target_survives_a_short_run() {
    for target in Target::ALL {
        // The seeds: nearly all accepted (a WAV reader refuses 8-bit PCM on purpose).
        let seeds = load_corpus(&target.corpus_dir()).unwrap();
        assert!(seeds.len() >= 3, "{}: only {} seeds", target.name(), seeds.len());
        let refused: Vec<_> =
            seeds.iter().filter(|(_, b)| !target.run(b)).map(|(p, _)| p.display().to_string()).collect();
        let allowed = usize::from(target == Target::Wav);
        assert!(refused.len() <= allowed, "{}: seeds refused: {refused:?}", target.name());
        for (path, bytes) in &seeds {
            assert!(bytes.len() <= 20 * 1024, "{}: {} bytes, keep seeds small", path.display(), bytes.len());
        }

        if target == Target::Mp4 {
            // The target goes past the demuxer: the video seeds plan frames (avcC, SPS, NAL
            // lengths), the audio seeds trim by their edit lists.
            let planned = seeds.iter().filter(|(_, b)| plan_video_frames(b, 30.0, None).is_ok_and(|n| n > 0)).count();
            let trimmed = seeds.iter().filter(|(_, b)| plan_audio_trim(b, 16_000, 16_384).is_ok()).count();
            // All 6 with H.264; the 4 with AAC or MP3 (not the PCM .mov, not the video-only ones).
            assert!(planned >= 6 && trimmed >= 4, "{planned} planned, {trimmed} trimmed");
        }

        let mut opts = Options::new(target, EXECS);
        opts.seed = 15;
        opts.findings = std::env::temp_dir().join(format!("avsc-fuzz-smoke-{}", std::process::id()));
        // Debug builds are slower; a hang is still a hang.
        opts.timeout = std::time::Duration::from_secs(5);
        let report = fuzz(target, &opts).unwrap();
        eprintln!("{}", report.summary());
        assert_eq!(report.execs, EXECS);
        assert_eq!(report.seeds_accepted, seeds.len() - refused.len());
        assert!(report.mutants_accepted > 0, "{}: no mutant accepted, the run tests only error paths", target.name());
        for f in &report.findings {
            eprintln!(
                "FINDING {} ({} times): {}\n{}",
                f.kind,
                f.count,
                f.detail,
                describe_input(&f.input, f.saved.as_deref())
            );
        }
        assert!(report.findings.is_empty(), "{}: {} findings", target.name(), report.findings.len());
    }
}
