//! Results: one row per figure, printed as a table and kept in a markdown file.

use std::path::Path;

use anyhow::Context;

/// One measured figure beside its ceiling.
#[derive(Clone, Debug)]
pub struct Row {
    /// Scenario and what was measured, e.g. `ingest: messages/s`; the key when merging.
    pub what: String,
    /// The figure, with its unit.
    pub figure: String,
    /// The ceiling measured in the same run, with its unit.
    pub ceiling: String,
    /// figure ÷ ceiling, where both are rates or sizes of the same kind.
    pub ratio: Option<f64>,
    /// The command that reproduces it.
    pub command: String,
}

impl Row {
    /// A row; `ratio` is left empty when figure and ceiling do not divide meaningfully.
    pub fn new(what: impl Into<String>, figure: impl Into<String>, ceiling: impl Into<String>) -> Row {
        Row {
            what: what.into(),
            figure: figure.into(),
            ceiling: ceiling.into(),
            ratio: None,
            command: String::new(),
        }
    }

    /// With figure ÷ ceiling.
    pub fn ratio(mut self, ratio: f64) -> Row {
        self.ratio = Some(ratio);
        self
    }

    /// With the command that reproduces it.
    pub fn command(mut self, command: &str) -> Row {
        self.command = command.to_owned();
        self
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}"))
}

/// Prints the rows as an aligned table.
pub fn print(rows: &[Row]) {
    let width = |f: fn(&Row) -> &str, title: &str| rows.iter().map(|r| f(r).len()).max().unwrap_or(0).max(title.len());
    let (w1, w2, w3) = (
        width(|r| &r.what, "what"),
        width(|r| &r.figure, "figure"),
        width(|r| &r.ceiling, "ceiling"),
    );
    println!(
        "\n{:<w1$}  {:>w2$}  {:>w3$}  {:>5}",
        "what", "figure", "ceiling", "ratio"
    );
    for r in rows {
        println!(
            "{:<w1$}  {:>w2$}  {:>w3$}  {:>5}",
            r.what,
            r.figure,
            r.ceiling,
            ratio_text(r.ratio)
        );
    }
}

const HEADER: &str = "| What | Figure | Ceiling (same run) | Ratio | Command |\n|---|---|---|---|---|\n";

/// Updates `path`'s table: rows of this run replace rows with the same `what`, others stay.
pub fn update_markdown(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = old
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .filter(|l| l.starts_with('|'))
        .map(str::to_owned)
        .collect();
    for row in rows {
        let line = format!(
            "| {} | {} | {} | {} | `{}` |",
            row.what,
            row.figure,
            row.ceiling,
            ratio_text(row.ratio),
            row.command
        );
        let key = format!("| {} |", row.what);
        match lines.iter_mut().find(|l| l.starts_with(&key)) {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let text = format!(
        "Last updated {date} on {cores} cores.\n\n{HEADER}{}\n",
        lines.join("\n")
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A quantile of sorted values (`q` in 0..=1); 0 when empty.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied().unwrap_or(0)
}

/// `n` with thousands separators.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
