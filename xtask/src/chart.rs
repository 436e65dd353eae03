//! The bench chart: IOPS of every target relative to brd, per row, native and emulated panels.
//! Drawn as SVG with plotters (no font backend needed) and rasterised to PNG with resvg.

use crate::bench::{Mode, Row, TARGETS};
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

const WIDTH: u32 = 1400;
const PANEL_HEIGHT: u32 = 420;
const COLOURS: [RGBColor; 5] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
];

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
        .build_cartesian_2d(0f64..n as f64, 0f64..max)
        .context("chart axes")?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
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

/// Writes `path` (PNG) and the SVG beside it.
pub fn write(rows: &[Row], native_title: &str, emulated_title: &str, path: &Path) -> Result<()> {
    let native: Vec<&Row> = rows.iter().filter(|r| r.mode == Mode::Native).collect();
    let emulated: Vec<&Row> = rows.iter().filter(|r| r.mode == Mode::Emulated).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, PANEL_HEIGHT * 2)).into_drawing_area();
        root.fill(&WHITE).context("background")?;
        let (top, bottom) = root.split_vertically(PANEL_HEIGHT);
        panel(&top, &native, native_title)?;
        panel(&bottom, &emulated, emulated_title)?;
        root.present().context("svg")?;
    }
    std::fs::write(path.with_extension("svg"), &svg)?;
    let mut options = resvg::usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(&svg, &options).context("parse chart svg")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("pixmap")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .save_png(path)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn writes_a_png() {
        let row = |mode, v: f64| Row {
            mode,
            job: "4k-randread".into(),
            depth: "t1".into(),
            iops: BTreeMap::from([("rxdsk".to_string(), v), ("brd".to_string(), 100.0)]),
            mbps: BTreeMap::new(),
            ratios: BTreeMap::new(),
        };
        let rows = [row(Mode::Native, 120.0), row(Mode::Emulated, 150.0)];
        let dir = std::env::temp_dir().join(format!("rxdsk-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let png = dir.join("c.png");
        write(&rows, "native", "emulated", &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
        assert!(svg.contains("rxdsk") && svg.contains("IOPS relative to brd"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
