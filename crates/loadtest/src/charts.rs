//! PNG line charts (plotters' bitmap backend): one x axis of seconds since the run
//! started, the fault moments as labelled vertical lines, optional horizontal targets.
//! Text is drawn with ab_glyph from DejaVu Sans read at run time (no system font library).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::faults::Mark;

/// Where the font is looked for (Debian's fonts-dejavu-core, which scripts/loadtest.sh
/// installs when missing).
const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 500);
const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("no DejaVuSans.ttf in {FONT_PATHS:?}: install fonts-dejavu-core")]
    NoFont,
    #[error("drawing {path}: {reason}")]
    Draw { path: PathBuf, reason: String },
}

/// One line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    pub marks: &'a [Mark],
    /// A logarithmic y axis (latency).
    pub log_y: bool,
    /// Horizontal lines: (value, label), e.g. the latency targets.
    pub targets: &'a [(f64, &'a str)],
}

/// Registers the font once per process.
fn font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        FONT_PATHS.iter().any(|p| {
            std::fs::read(p).is_ok_and(|bytes| {
                // Registered for the life of the process: plotters keeps a 'static slice.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
            })
        })
    });
    ok.then_some(()).ok_or(ChartError::NoFont)
}

impl Chart<'_> {
    /// Draws the chart into `path` (PNG).
    pub fn draw(&self, path: &Path) -> Result<(), ChartError> {
        font()?;
        self.render(path).map_err(|reason| ChartError::Draw {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn render(&self, path: &Path) -> Result<(), String> {
        let points = || self.series.iter().flat_map(|s| s.points.iter());
        let x_max = points().map(|p| p.0).fold(1.0, f64::max);
        let y_max = points()
            .map(|p| p.1)
            .chain(self.targets.iter().map(|t| t.0))
            .fold(0.0, f64::max)
            * 1.15;
        let root = BitMapBackend::new(path, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(self.title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70);
        if self.log_y {
            let y_min = points()
                .map(|p| p.1)
                .filter(|&y| y > 0.0)
                .fold(f64::MAX, f64::min)
                .min(y_max / 10.0)
                .max(0.01);
            let mut chart = builder
                .build_cartesian_2d(0.0..x_max, (y_min..y_max.max(y_min * 10.0)).log_scale())
                .map_err(|e| e.to_string())?;
            self.decorate(&mut chart, y_min, y_max)
        } else {
            let mut chart = builder
                .build_cartesian_2d(0.0..x_max, 0.0..y_max.max(1.0))
                .map_err(|e| e.to_string())?;
            self.decorate(&mut chart, 0.0, y_max.max(1.0))
        }?;
        root.present().map_err(|e| e.to_string())
    }

    fn decorate<'b, Y>(
        &self,
        chart: &mut ChartContext<
            'b,
            BitMapBackend<'b>,
            Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
        >,
        y_min: f64,
        y_max: f64,
    ) -> Result<(), String>
    where
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc("seconds since start")
            .y_desc(self.y_label)
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        let x_max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        for &(value, label) in self.targets {
            let style = RGBColor(120, 120, 120).stroke_width(1);
            chart
                .draw_series(LineSeries::new([(0.0, value), (x_max, value)], style))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series([Text::new(label.to_string(), (1.0, value), (FONT, 13))])
                .map_err(|e| e.to_string())?;
        }
        for (i, mark) in self.marks.iter().enumerate() {
            let red = RGBColor(200, 0, 0);
            chart
                .draw_series(LineSeries::new(
                    [(mark.t, y_min), (mark.t, y_max)],
                    red.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            // Numbered at the top, staggered so that close moments stay readable; the
            // report's table says what each number was.
            let y = if i % 2 == 0 {
                y_max * 0.97
            } else {
                y_max * 0.85
            };
            let label = format!("F{}", i + 1);
            chart
                .draw_series([Text::new(
                    label,
                    (mark.t, y),
                    (FONT, 13).into_font().color(&red),
                )])
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| e.to_string())
    }
}
