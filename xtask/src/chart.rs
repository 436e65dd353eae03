//! The bench chart: IOPS of every target relative to brd, per row, native and emulated panels.
//! Drawn as SVG with plotters (no font backend needed) and rasterised to PNG with resvg, whose
//! text needs real fonts: see [`font_db`].

use crate::bench::{Mode, Row, TARGETS};
use anyhow::{bail, ensure, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use resvg::usvg::fontdb;
use std::path::Path;
use std::sync::Arc;

const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 420;
const COLOURS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

/// The x axis: `n` rows side by side, row `i` over `i..i + 1`, with one tick (labelled with
/// the row) under the middle of each; plotters' own f64 axis picks "round" ticks instead, which
/// fall between groups of bars and skip rows.
struct RowAxis(usize);

impl Ranged for RowAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = f64::from(limit.1 - limit.0);
        limit.0 + (span * value / self.0 as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        (0..self.0).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        0.0..self.0 as f64
    }
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    rows: &[&Row],
    title: &str,
) -> Result<()> {
    let max = rows
        .iter()
        .flat_map(|r| {
            TARGETS
                .iter()
                .filter_map(|t| Some(r.iops.get(t.label)? / r.iops.get("brd")?))
        })
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.15;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(RowAxis(n), 0f64..max)
        .context("chart axes")?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| {
            rows.get(x.floor() as usize)
                .map(|r| format!("{}@{}", r.job, r.depth))
                .unwrap_or_default()
        })
        .y_desc("IOPS relative to brd")
        .label_style(("sans-serif", 13))
        .draw()
        .context("chart mesh")?;
    let bar = 0.8 / TARGETS.len() as f64;
    for (k, t) in TARGETS.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let bars = rows.iter().enumerate().filter_map(|(i, r)| {
            let v = r.iops.get(t.label)? / r.iops.get("brd")?;
            let x0 = i as f64 + 0.1 + k as f64 * bar;
            v.is_finite()
                .then(|| Rectangle::new([(x0, 0.0), (x0 + bar * 0.9, v)], colour.filled()))
        });
        chart
            .draw_series(bars)
            .context("bars")?
            .label(t.label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(1),
        )))
        .context("baseline")?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .context("legend")?;
    Ok(())
}

/// The Debian package `cargo xtask deps` installs for the chart's text.
const FONT_PACKAGE: &str = "fonts-dejavu-core";
/// Searched when fontconfig yields no font or none of the preferred families.
const FONT_DIRS: [&str; 2] = ["/usr/share/fonts", "/usr/local/share/fonts"];
/// Candidates for the CSS generic families, first installed wins; DejaVu is [`FONT_PACKAGE`].
const SANS_SERIF: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "FreeSans",
    "Arial",
    "Helvetica",
];
const SERIF: [&str; 5] = [
    "DejaVu Serif",
    "Liberation Serif",
    "Noto Serif",
    "FreeSerif",
    "Times New Roman",
];
const MONOSPACE: [&str; 5] = [
    "DejaVu Sans Mono",
    "Liberation Mono",
    "Noto Sans Mono",
    "FreeMono",
    "Courier New",
];

fn installed(db: &fontdb::Database, candidates: &[&str]) -> Option<String> {
    candidates
        .iter()
        .find(|name| {
            db.faces()
                .any(|f| f.families.iter().any(|(n, _)| n == *name))
        })
        .map(|n| n.to_string())
}

/// The fonts the chart's text is drawn with: the system's, with the CSS generic families
/// mapped to families really installed. fontdb maps `sans-serif` to Arial and `serif` to Times
/// New Roman, which Debian lacks, and then resvg silently draws no text at all; so this fails,
/// naming the package to install, when no font can be found.
pub fn font_db() -> Result<fontdb::Database> {
    let mut db = fontdb::Database::new();
    db.load_system_fonts();
    if installed(&db, &SANS_SERIF).is_none() {
        for dir in FONT_DIRS {
            if Path::new(dir).is_dir() {
                db.load_fonts_dir(dir);
            }
        }
    }
    generic_families(db)
}

/// Maps the CSS generic families of `db` to installed families; fails if it has no font.
fn generic_families(mut db: fontdb::Database) -> Result<fontdb::Database> {
    // Any installed family is better than no text.
    let any = db
        .faces()
        .find_map(|f| f.families.first())
        .map(|(n, _)| n.clone());
    let Some(sans) = installed(&db, &SANS_SERIF).or(any) else {
        bail!(
            "no font found for the bench chart's text (searched fontconfig and {}): \
             install Debian's {FONT_PACKAGE} (`cargo xtask deps` does)",
            FONT_DIRS.join(", ")
        );
    };
    db.set_serif_family(installed(&db, &SERIF).unwrap_or_else(|| sans.clone()));
    db.set_monospace_family(installed(&db, &MONOSPACE).unwrap_or_else(|| sans.clone()));
    db.set_cursive_family(sans.clone());
    db.set_fantasy_family(sans.clone());
    db.set_sans_serif_family(sans);
    for family in [fontdb::Family::SansSerif, fontdb::Family::Serif] {
        ensure!(
            db.query(&fontdb::Query {
                families: &[family],
                ..Default::default()
            })
            .is_some(),
            "the font database resolves no {family:?} font: install Debian's {FONT_PACKAGE}"
        );
    }
    Ok(db)
}

/// Rasterises `svg` with the fonts of `db`.
fn rasterise(svg: &str, db: Arc<fontdb::Database>) -> Result<resvg::tiny_skia::Pixmap> {
    let mut options = resvg::usvg::Options {
        fontdb: db.clone(),
        ..Default::default()
    };
    // For text without a font-family (plotters always sets one).
    options.font_family = db.family_name(&fontdb::Family::SansSerif).to_string();
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("parse chart svg")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("pixmap")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap)
}

/// The chart as SVG: one panel per mode with a title (`None`: no panel, e.g. `--native-only`).
fn svg(rows: &[Row], native_title: &str, emulated_title: Option<&str>) -> Result<String> {
    let panels: Vec<(Vec<&Row>, &str)> = [
        (Mode::Native, Some(native_title)),
        (Mode::Emulated, emulated_title),
    ]
    .into_iter()
    .filter_map(|(mode, title)| Some((rows.iter().filter(|r| r.mode == mode).collect(), title?)))
    .collect();
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).context("background")?;
        let areas = root.split_evenly((panels.len(), 1));
        for (area, (rows, title)) in areas.iter().zip(&panels) {
            panel(area, rows, title)?;
        }
        root.present().context("svg")?;
    }
    Ok(svg)
}

/// Writes `path` (PNG) and the SVG beside it; the emulated panel only with `emulated_title`.
pub fn write(
    rows: &[Row],
    native_title: &str,
    emulated_title: Option<&str>,
    path: &Path,
) -> Result<()> {
    let svg = svg(rows, native_title, emulated_title)?;
    std::fs::write(path.with_extension("svg"), &svg)?;
    rasterise(&svg, Arc::new(font_db()?))?
        .save_png(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn rows() -> Vec<Row> {
        let row = |mode, depth: &str, v: f64| Row {
            mode,
            job: "4k-randread".into(),
            depth: depth.into(),
            iops: BTreeMap::from([
                ("rxdsk".to_string(), v),
                ("brd".to_string(), 100.0),
                ("null_blk".to_string(), 180.0),
            ]),
            mbps: BTreeMap::new(),
            ratios: BTreeMap::new(),
        };
        vec![
            row(Mode::Native, "t1", 120.0),
            row(Mode::Native, "t2", 90.0),
            row(Mode::Emulated, "qd32", 150.0),
        ]
    }

    /// `svg` without its `<text>` elements.
    fn without_text(svg: &str) -> String {
        let mut out = String::new();
        let mut rest = svg;
        while let Some(i) = rest.find("<text") {
            out += &rest[..i];
            let end = i + rest[i..].find("</text>").expect("closed <text>") + "</text>".len();
            rest = &rest[end..];
        }
        out + rest
    }

    fn differing_pixels(a: &resvg::tiny_skia::Pixmap, b: &resvg::tiny_skia::Pixmap) -> usize {
        assert_eq!((a.width(), a.height()), (b.width(), b.height()));
        a.pixels()
            .iter()
            .zip(b.pixels())
            .filter(|(p, q)| p != q)
            .count()
    }

    #[test]
    fn writes_a_png() {
        let dir = std::env::temp_dir().join(format!("rxdsk-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("c.png");
        write(&rows(), "native", Some("emulated"), &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
        assert!(svg.contains("rxdsk") && svg.contains("IOPS relative to brd"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The PNG really has text: rendering the chart with and without its `<text>` elements
    /// gives different pixels (with fontdb's defaults, as before the fix, they were identical).
    #[test]
    fn png_has_text() {
        let svg = svg(&rows(), "NATIVE panel title", Some("EMULATED panel title")).unwrap();
        let bare = without_text(&svg);
        assert!(svg.matches("<text").count() >= 10 && !bare.contains("<text"));

        let db = Arc::new(font_db().unwrap());
        let face = db
            .query(&fontdb::Query {
                families: &[fontdb::Family::SansSerif],
                ..Default::default()
            })
            .unwrap();
        assert!(db.face(face).is_some());
        let with = rasterise(&svg, db.clone()).unwrap();
        let without = rasterise(&bare, db).unwrap();
        // Title, axis descriptions, tick labels and legend: thousands of pixels.
        let n = differing_pixels(&with, &without);
        assert!(n > 5_000, "text changed only {n} pixels");

        // The check catches the original defect: no usable font, no text.
        let empty = Arc::new(fontdb::Database::new());
        let with = rasterise(&svg, empty.clone()).unwrap();
        let without = rasterise(&bare, empty).unwrap();
        assert_eq!(differing_pixels(&with, &without), 0);
    }

    #[test]
    fn no_font_is_an_error_naming_the_package() {
        let e = generic_families(fontdb::Database::new()).unwrap_err();
        assert!(e.to_string().contains(FONT_PACKAGE), "{e}");
    }

    #[test]
    fn native_only_chart_has_one_panel() {
        let svg = svg(&rows(), "native", None).unwrap();
        // Every row is labelled, the emulated one absent.
        assert!(
            svg.contains(">\n4k-randread@t1\n<")
                && svg.contains(">\n4k-randread@t2\n<")
                && !svg.contains("qd32"),
            "{svg}"
        );
        let db = Arc::new(font_db().unwrap());
        assert_eq!(rasterise(&svg, db).unwrap().height(), PANEL_HEIGHT);
    }
}
