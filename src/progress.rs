//! The one progress-bar style of every command and benchmark (on standard error; standard output keeps
//! only the results scripts read).
use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` events, after `label` if not empty; the message, if set, after it.
pub fn events(label: &str, total: u64) -> ProgressBar {
    bar(total, label, "{pos}/{len} events {per_sec} eta {eta} {msg}")
}

/// A bar over `total` bytes of a file; the message (what was read so far) in the middle.
pub fn bytes(total: u64) -> ProgressBar {
    bar(total, "", "{bytes}/{total_bytes} {msg} eta {eta}")
}

fn bar(total: u64, label: &str, counts: &str) -> ProgressBar {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!("{label}{{bar:40}} {counts}"))
            .expect("valid template"),
    );
    bar
}
