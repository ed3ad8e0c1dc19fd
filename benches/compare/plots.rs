//! The charts of `--plot DIR`: throughput against item size, and round-trip
//! times.

use crate::report::Row;
use crate::{Res, FRAME_WORDS};

pub fn plot(dir: &str, rows: &[Row]) -> Res<()> {
    use plotters::prelude::*;
    std::fs::create_dir_all(dir)?;
    let ok = |r: &&Row| r.values.is_ok();
    let median = |r: &Row| r.values.as_ref().map_or(0.0, |v| v[0]);

    // Throughput against item size: the u64 stream and the frames.
    let path = format!("{dir}/throughput.svg");
    let root = SVGBackend::new(&path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let sized: Vec<(&Row, f64)> = rows
        .iter()
        .filter(ok)
        .filter_map(|r| match r.case {
            _ if r.unit != "GB/s" => None,
            "stream_u64_batch" => Some((r, 8.0)),
            "frames_video" => Some((r, (FRAME_WORDS * 8) as f64)),
            "frames_layer_video" => Some((r, (FRAME_WORDS * 8) as f64)),
            "frames_1k" => Some((r, 1024.0)),
            "frames_64k" => Some((r, 65536.0)),
            _ => None,
        })
        .collect();
    let top = sized.iter().map(|(r, _)| median(r)).fold(0.1, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("throughput against item size (median)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((4f64..3e7).log_scale(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("item size, bytes")
        .y_desc("GB/s")
        .draw()?;
    let mut keys: Vec<&str> = Vec::new();
    for (r, _) in &sized {
        let key = r.contender.split(' ').next().unwrap_or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    for (i, key) in keys.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = sized
            .iter()
            .filter(|(r, _)| r.contender.split(' ').next() == Some(key))
            .map(|&(r, x)| (x, median(r)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(*key)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;

    // Round-trip time per contender, both ping-pongs, in µs on a log axis.
    let path = format!("{dir}/rtt.svg");
    let root = SVGBackend::new(&path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let rtt: Vec<(String, f64)> = rows
        .iter()
        .filter(ok)
        .filter_map(|r| match r.unit {
            "ns/RTT" => Some((format!("{}: {}", r.case, r.contender), median(r) / 1e3)),
            "µs/RTT" => Some((format!("{}: {}", r.case, r.contender), median(r))),
            _ => None,
        })
        .collect();
    let lo = rtt.iter().map(|r| r.1).fold(f64::MAX, f64::min).min(1.0) / 2.0;
    let hi = rtt.iter().map(|r| r.1).fold(0.0, f64::max).max(1.0) * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "round-trip time (median, µs, log scale)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(260)
        .build_cartesian_2d((lo..hi).log_scale(), (0..rtt.len() as i32).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("µs per round trip")
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                rtt.get(*i as usize).map_or(String::new(), |r| r.0.clone())
            }
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(rtt.iter().enumerate().map(|(i, (_, v))| {
        let i = i as i32;
        let corners = [
            (lo, SegmentValue::Exact(i)),
            (*v, SegmentValue::Exact(i + 1)),
        ];
        let mut bar = Rectangle::new(corners, BLUE.mix(0.6).filled());
        bar.set_margin(6, 6, 0, 0);
        bar
    }))?;
    root.present()?;
    Ok(())
}
