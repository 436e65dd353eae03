//! The bench chart: the ratios the targets are about, each a point with its interquartile
//! range as a whisker, around a line at 1.0 and the target's own line; one panel per section
//! (the native rows against brd and the ceilings, the compressed rows against zram, the
//! backing device's rows, the emulated rows). Drawn as SVG with plotters (no font backend
//! needed) and rasterised to PNG with resvg, whose text needs real fonts: see [`font_db`].

use crate::bench::Spread;
use anyhow::{bail, ensure, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use resvg::usvg::fontdb;
use std::path::Path;
use std::sync::Arc;

const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 420;
/// Distinct and readable for the common colour-vision deficiencies (Okabe and Ito's palette).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// One ratio of one group of a panel: `series` (the legend's name, e.g. `rxdsk/brd`) measured
/// on `group` (the x axis's label, e.g. `4k-randread@t1`).
#[derive(Clone, Debug)]
pub struct Entry {
    pub group: String,
    pub series: String,
    /// Median and IQR; a single measurement has all three equal (no whisker).
    pub spread: Spread,
    /// The ratio this entry must reach, drawn as a dashed mark across its group.
    pub target: Option<f64>,
}

/// One section of the chart.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub entries: Vec<Entry>,
}

/// The x axis: `n` groups side by side, group `i` over `i..i + 1`, with one tick (labelled
/// with the group) under the middle of each; plotters' own f64 axis picks "round" ticks
/// instead, which fall between groups and skip some.
struct GroupAxis(usize);

impl Ranged for GroupAxis {
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

/// The distinct values of `key` over `entries`, in first-seen order.
fn distinct(entries: &[&Entry], key: fn(&Entry) -> &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        if !out.iter().any(|v| v == key(e)) {
            out.push(key(e).to_string());
        }
    }
    out
}

fn draw_panel(area: &DrawingArea<SVGBackend, plotters::coord::Shift>, panel: &Panel) -> Result<()> {
    let entries: Vec<&Entry> = panel
        .entries
        .iter()
        .filter(|e| e.spread.median.is_finite())
        .collect();
    let groups = distinct(&entries, |e| &e.group);
    let series = distinct(&entries, |e| &e.series);
    let top = entries
        .iter()
        .flat_map(|e| [e.spread.p75, e.spread.median, e.target.unwrap_or(0.0)])
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        // Headroom above the data for the legend.
        * 1.5;
    let n = groups.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(GroupAxis(n), 0f64..top)
        .context("chart axes")?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| groups.get(x.floor() as usize).cloned().unwrap_or_default())
        .y_desc("ratio (median, IQR whisker)")
        .label_style(("sans-serif", 13))
        .draw()
        .context("chart mesh")?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            BLACK.stroke_width(1),
        )))
        .context("line at 1.0")?;
    // Each group's targets: a dashed mark across the group, one per distinct target.
    let target_style = RGBColor(90, 90, 90).stroke_width(2);
    let mut marks = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let mut targets: Vec<f64> = entries
            .iter()
            .filter(|e| &e.group == g)
            .filter_map(|e| e.target)
            .collect();
        targets.dedup();
        for t in targets {
            let dashes = 6;
            for d in (0..dashes).step_by(2) {
                let x0 = i as f64 + 0.05 + 0.9 * d as f64 / dashes as f64;
                let x1 = x0 + 0.9 / dashes as f64;
                marks.push(PathElement::new(vec![(x0, t), (x1, t)], target_style));
            }
        }
    }
    if !marks.is_empty() {
        chart
            .draw_series(marks)
            .context("targets")?
            .label("target")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], target_style));
    }
    let slot = 0.8 / series.len().max(1) as f64;
    for (k, name) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let at = |e: &Entry| -> Option<f64> {
            let i = groups.iter().position(|g| *g == e.group)?;
            Some(i as f64 + 0.1 + slot * (k as f64 + 0.5))
        };
        let mine: Vec<&&Entry> = entries.iter().filter(|e| &e.series == name).collect();
        let whiskers = mine.iter().filter_map(|e| {
            let x = at(e)?;
            let w = slot * 0.25;
            Some(PathElement::new(
                vec![
                    (x - w, e.spread.p25),
                    (x + w, e.spread.p25),
                    (x, e.spread.p25),
                    (x, e.spread.p75),
                    (x - w, e.spread.p75),
                    (x + w, e.spread.p75),
                ],
                colour.stroke_width(2),
            ))
        });
        chart.draw_series(whiskers).context("whiskers")?;
        let points = mine
            .iter()
            .filter_map(|e| Some(Circle::new((at(e)?, e.spread.median), 5, colour.filled())));
        chart
            .draw_series(points)
            .context("medians")?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 6, y), 5, colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
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

/// The chart as SVG: the panels one above the other (those without entries left out).
fn svg(panels: &[Panel]) -> Result<String> {
    let panels: Vec<&Panel> = panels.iter().filter(|p| !p.entries.is_empty()).collect();
    let mut svg = String::new();
    {
        let height = PANEL_HEIGHT * panels.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).context("background")?;
        let areas = root.split_evenly((panels.len().max(1), 1));
        for (area, panel) in areas.iter().zip(&panels) {
            draw_panel(area, panel)?;
        }
        root.present().context("svg")?;
    }
    Ok(svg)
}

/// Writes `path` (PNG) and the SVG beside it.
pub fn write(panels: &[Panel], path: &Path) -> Result<()> {
    let svg = svg(panels)?;
    std::fs::write(path.with_extension("svg"), &svg)?;
    rasterise(&svg, Arc::new(font_db()?))?
        .save_png(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(p25: f64, median: f64, p75: f64) -> Spread {
        Spread {
            p25,
            median,
            p75,
            pairs: 9,
        }
    }

    fn panels() -> Vec<Panel> {
        let e = |group: &str, series: &str, s: Spread, target| Entry {
            group: group.into(),
            series: series.into(),
            spread: s,
            target,
        };
        vec![
            Panel {
                title: "NATIVE panel title".into(),
                entries: [
                    ("4k-randread@t1", "rxdsk/brd", (0.95, 1.02, 1.08), Some(1.0)),
                    ("4k-randread@t1", "rxdsk/null_blk", (0.7, 0.8, 0.85), None),
                    ("1M-seqread@t1", "rxdsk/brd", (0.84, 0.86, 0.89), Some(1.0)),
                    ("1M-seqread@t1", "rxdsk/memcpy", (0.6, 0.7, 0.75), Some(0.8)),
                ]
                .into_iter()
                .map(|(g, series, (p25, m, p75), t)| e(g, series, spread(p25, m, p75), t))
                .collect(),
            },
            Panel {
                title: "EMULATED panel title".into(),
                entries: vec![e(
                    "4k-randread@qd32",
                    "rxdsk/brd",
                    spread(1.4, 1.5, 1.6),
                    None,
                )],
            },
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
        write(&panels(), &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
        assert!(svg.contains("rxdsk/memcpy") && svg.contains("IQR whisker"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The PNG really has text: rendering the chart with and without its `<text>` elements
    /// gives different pixels (with fontdb's defaults, as before the fix, they were identical).
    #[test]
    fn png_has_text() {
        let svg = svg(&panels()).unwrap();
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
    fn a_panel_without_entries_is_left_out() {
        let mut p = panels();
        p[1].entries.clear();
        let svg = svg(&p).unwrap();
        // Every group is labelled, the empty panel absent.
        assert!(
            svg.contains(">\n4k-randread@t1\n<")
                && svg.contains(">\n1M-seqread@t1\n<")
                && !svg.contains("EMULATED"),
            "{svg}"
        );
        let db = Arc::new(font_db().unwrap());
        assert_eq!(rasterise(&svg, db).unwrap().height(), PANEL_HEIGHT);
    }

    /// Every entry is a point (and the legend one per series), every target a dashed mark.
    #[test]
    fn points_whiskers_and_targets() {
        let p = panels();
        let svg = svg(&p[..1]).unwrap();
        let series = 3;
        assert_eq!(
            svg.matches("<circle").count(),
            p[0].entries.len() + series,
            "{svg}"
        );
        // Whiskers: one polyline of six points per entry.
        let whiskers = svg.matches("<polyline").count();
        assert!(whiskers >= p[0].entries.len(), "{whiskers}");
        // Targets 1.0 in both groups and 0.8 in the second: three dashed marks of three dashes.
        let (with, without) = (svg, svg_without_targets(&p[0]));
        assert_eq!(
            with.matches("<polyline").count() - without.matches("<polyline").count(),
            3 * 3 + 1,
            "nine dashes and the legend's mark"
        );
    }

    fn svg_without_targets(panel: &Panel) -> String {
        let mut panel = panel.clone();
        for e in &mut panel.entries {
            e.target = None;
        }
        svg(&[panel]).unwrap()
    }
}
