//! Progress bars on stderr (hidden when stderr is not a terminal, as in CI logs, where a
//! line per stage is printed instead).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting `unit`s, with rate and ETA.
pub fn bar(len: usize, what: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg:>10}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}
