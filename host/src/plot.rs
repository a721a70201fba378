//! PNG plots: training curves and confusion matrices (plotters, rendered in memory, written
//! atomically). Text uses the DejaVu Sans font bundled in host/assets (licence beside it), so
//! no system font is needed.

use crate::train::EpochMetrics;
use anyhow::{anyhow, Result};
use avsc_shared::{LABELS, NUM_CLASSES};
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::Path;
use std::sync::Once;

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .unwrap_or_else(|_| panic!("the bundled font is valid"));
    });
}

/// Render into an RGB buffer with `draw`, then write it as PNG atomically.
fn render(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    register_font();
    let mut buf = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
        draw(root.clone())?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&buf)?;
    }
    avsc_shared::write_atomic(path, &png_bytes)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Training loss and validation log loss (left) and validation accuracy (right) per epoch.
pub fn training_curves(path: &Path, title: &str, history: &[EpochMetrics]) -> Result<()> {
    render(path, (1000, 420), |root| {
        let root = root.titled(title, (FONT, 22)).map_err(err)?;
        let panels = root.split_evenly((1, 2));
        let epochs = history.len().max(1) as f64;
        let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
        let max_loss = history
            .iter()
            .flat_map(|m| [finite(m.train_loss), finite(m.val_log_loss)])
            .flatten()
            .fold(0.1f64, f64::max);

        let mut left = ChartBuilder::on(&panels[0])
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .caption("loss", (FONT, 16))
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..max_loss * 1.05)
            .map_err(err)?;
        left.configure_mesh().x_desc("epoch").y_desc("loss").label_style((FONT, 13)).draw().map_err(err)?;
        let train: Vec<(f64, f64)> = history.iter().map(|m| (m.epoch as f64, m.train_loss)).collect();
        let val: Vec<(f64, f64)> =
            history.iter().filter(|m| m.val_log_loss.is_finite()).map(|m| (m.epoch as f64, m.val_log_loss)).collect();
        left.draw_series(LineSeries::new(train.clone(), BLUE.stroke_width(2)))
            .map_err(err)?
            .label("train KL (mixed labels)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLUE.stroke_width(2)));
        left.draw_series(train.iter().map(|&p| Circle::new(p, 3, BLUE.filled()))).map_err(err)?;
        left.draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))
            .map_err(err)?
            .label("validation log loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(2)));
        left.draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled()))).map_err(err)?;
        left.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;

        let mut right = ChartBuilder::on(&panels[1])
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .caption("validation accuracy", (FONT, 16))
            .build_cartesian_2d(0.5f64..epochs + 0.5, 0f64..1.0)
            .map_err(err)?;
        right.configure_mesh().x_desc("epoch").y_desc("accuracy").label_style((FONT, 13)).draw().map_err(err)?;
        let acc: Vec<(f64, f64)> =
            history.iter().filter(|m| m.val_accuracy.is_finite()).map(|m| (m.epoch as f64, m.val_accuracy)).collect();
        right.draw_series(LineSeries::new(acc.clone(), GREEN.stroke_width(2))).map_err(err)?;
        right.draw_series(acc.iter().map(|&p| Circle::new(p, 3, GREEN.filled()))).map_err(err)?;
        right
            .draw_series(LineSeries::new(vec![(0.5, 0.1), (epochs + 0.5, 0.1)], BLACK.mix(0.4)))
            .map_err(err)?
            .label("chance")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
        right
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        Ok(())
    })
}

/// A confusion matrix as a heat map: true class down, predicted class across, cell colour =
/// the row's fraction, cell text = the count.
pub fn confusion(path: &Path, title: &str, m: &[[usize; NUM_CLASSES]; NUM_CLASSES]) -> Result<()> {
    let (w, h) = (900u32, 840u32);
    render(path, (w, h), |root| {
        let root = root.titled(title, (FONT, 22)).map_err(err)?;
        let (left, top, cell) = (170i32, 20i32, 62i32);
        let area = root.margin(0, 0, 0, 0);
        for (t, row) in m.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (p, &count) in row.iter().enumerate() {
                let frac = if total == 0 { 0.0 } else { count as f64 / total as f64 };
                let shade = (255.0 * (1.0 - frac)) as u8;
                let colour = RGBColor(shade, shade, 255);
                let (x0, y0) = (left + p as i32 * cell, top + t as i32 * cell);
                area.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], colour.filled())).map_err(err)?;
                area.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], BLACK.mix(0.2))).map_err(err)?;
                let text_colour = if frac > 0.6 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 15).into_font()).color(&text_colour).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                area.draw(&Text::new(count.to_string(), (x0 + cell / 2, y0 + cell / 2), style)).map_err(err)?;
            }
        }
        let right = plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        );
        for (i, name) in LABELS.iter().enumerate() {
            let y = top + i as i32 * cell + cell / 2;
            area.draw(&Text::new(name.to_string(), (left - 8, y), TextStyle::from((FONT, 14).into_font()).pos(right)))
                .map_err(err)?;
            let x = left + i as i32 * cell + cell / 2;
            let style = TextStyle::from((FONT, 14).into_font()).transform(FontTransform::Rotate270).pos(right);
            let y_text = top + NUM_CLASSES as i32 * cell + 8;
            area.draw(&Text::new(name.to_string(), (x, y_text), style)).map_err(err)?;
        }
        let grid_bottom = top + NUM_CLASSES as i32 * cell;
        area.draw(&Text::new(
            "predicted",
            (left + NUM_CLASSES as i32 * cell / 2 - 30, grid_bottom + 132),
            (FONT, 17).into_font(),
        ))
        .map_err(err)?;
        let style = TextStyle::from((FONT, 17).into_font()).transform(FontTransform::Rotate270);
        area.draw(&Text::new("true", (12, top + NUM_CLASSES as i32 * cell / 2 + 15), style)).map_err(err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut r = dec.read_info().unwrap();
        let mut buf = vec![0; r.output_buffer_size()];
        let info = r.next_frame(&mut buf).unwrap();
        (info.width, info.height, buf)
    }

    #[test]
    fn confusion_png_has_the_cells_and_text() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = [[0usize; NUM_CLASSES]; NUM_CLASSES];
        for (i, row) in m.iter_mut().enumerate() {
            row[i] = 9;
            row[(i + 1) % NUM_CLASSES] = 1;
        }
        let p = dir.path().join("c.png");
        confusion(&p, "test", &m).unwrap();
        let (w, h, px) = decode(&p);
        assert_eq!((w, h), (900, 840));
        // A diagonal cell (90 %) is dark blue, an empty cell white: sample the cells' corners.
        let at = |x: u32, y: u32| {
            let i = ((y * w + x) * 3) as usize;
            [px[i], px[i + 1], px[i + 2]]
        };
        let title_h = 40; // below the title band
        let diag = at(170 + 3, title_h + 20 + 3);
        assert!(diag[0] < 60 && diag[2] > 200, "{diag:?}");
        let empty = at(170 + 62 * 5 + 3, title_h + 20 + 3);
        assert!(empty[0] > 240, "{empty:?}");
        // The labels left of the grid put dark pixels there.
        let dark = (0..170).flat_map(|x| (60..700).map(move |y| (x, y))).filter(|&(x, y)| at(x, y)[0] < 100).count();
        assert!(dark > 500, "{dark}");
    }

    #[test]
    fn training_curve_png_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<EpochMetrics> = (1..=4)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 2.0 / e as f64,
                l2_penalty: 0.1,
                lr: 1e-3,
                val_accuracy: 0.2 * e as f64,
                val_log_loss: 2.2 / e as f64,
                seconds: 1.0,
            })
            .collect();
        let p = dir.path().join("curve.png");
        training_curves(&p, "aud_mel", &history).unwrap();
        let (w, h, px) = decode(&p);
        assert_eq!((w, h), (1000, 420));
        let blue = px.chunks(3).filter(|c| c[2] > 200 && c[0] < 50 && c[1] < 50).count();
        assert!(blue > 100, "the train-loss line is drawn: {blue}");
    }
}
