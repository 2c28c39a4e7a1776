//! The figures of a run, each next to its target: the table printed at the end, the verdict
//! line that closes the output, and the section `--write` puts into BENCHMARKS.md (between two
//! marker comments, so a later run replaces exactly what an earlier one wrote).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

const BEGIN: &str = "<!-- whole_path: begin (written by `--write`) -->";
const END: &str = "<!-- whole_path: end -->";

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The section that measured it (`apply`, `grants`, …).
    pub section: &'static str,
    pub what: String,
    pub measured: String,
    /// The target from issue #13's table, or `—` where it has none.
    pub target: String,
    /// `None`: no target, the figure is for reading only.
    pub met: Option<bool>,
}

impl Figure {
    pub fn new(
        section: &'static str,
        what: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        met: Option<bool>,
    ) -> Self {
        Self {
            section,
            what: what.into(),
            measured: measured.into(),
            target: target.into(),
            met,
        }
    }

    /// A figure without a target.
    pub fn info(
        section: &'static str,
        what: impl Into<String>,
        measured: impl Into<String>,
    ) -> Self {
        Self::new(section, what, measured, "—", None)
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "**met**",
            Some(false) => "**not met**",
            None => "",
        }
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// Seconds with one decimal.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The value at quantile `q` (0..=1) of `sorted`, nearest rank.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[rank.min(sorted.len() - 1)])
}

/// The figures as a Markdown table.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::from("| section | what | measured | target | |\n|---|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            f.section,
            f.what,
            f.measured,
            f.target,
            f.verdict()
        );
    }
    out
}

/// The closing line: which targets are met and which are not.
pub fn verdict(figures: &[Figure]) -> String {
    let met: Vec<&str> = figures
        .iter()
        .filter(|f| f.met == Some(true))
        .map(|f| f.what.as_str())
        .collect();
    let missed: Vec<&str> = figures
        .iter()
        .filter(|f| f.met == Some(false))
        .map(|f| f.what.as_str())
        .collect();
    format!(
        "targets met: {} of {}; met: [{}]; NOT met: [{}]",
        met.len(),
        met.len() + missed.len(),
        met.join("; "),
        missed.join("; ")
    )
}

/// Replaces the marked section of `path` (BENCHMARKS.md) with `header`, the table and the
/// verdict, or appends it if the file has no such section yet.
pub fn write(path: &Path, header: &str, figures: &[Figure]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let section = format!(
        "{BEGIN}\n{header}\n\n{}\n{}\n{END}",
        table(figures),
        verdict(figures)
    );
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{section}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
