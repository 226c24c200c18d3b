//! The shared parts: thinning, the collector's budgets, the bounded line reader.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;

#[test]
fn thin_keeps_first_and_last_evenly() {
    let pts: Vec<(i64, f64)> = (0..10).map(|i| (i, i as f64)).collect();
    let t = thin(pts.clone(), 4);
    assert_eq!(t, vec![(0, 0.0), (3, 3.0), (6, 6.0), (9, 9.0)]);
    assert_eq!(thin(pts.clone(), 10), pts);
    assert_eq!(thin(pts.clone(), 2), vec![(0, 0.0), (9, 9.0)]);
    assert_eq!(thin(pts, 1), vec![(0, 0.0)]);
}

#[test]
fn collector_sorts_dedupes_and_bounds() {
    let limits = Limits {
        max_points: 1000,
        ..Limits::default()
    };
    let mut w = Warnings::new(Path::new("f"), &limits);
    let mut c = Collector::new(&limits);
    // Out of order, a re-logged step (the later wins), a NaN.
    for (s, v) in [(2, 2.0), (1, 1.0), (2, 20.0), (3, f64::NAN)] {
        c.push(&mut w, "m", Axis::Step, s, v);
    }
    // A long series: thinned while read, and to max_points at the end.
    for s in 0..1_000_000i64 {
        c.push(&mut w, "long", Axis::Step, s, s as f64);
    }
    let out = c.finish(&mut w);
    assert_eq!(
        out[0],
        ("m".to_owned(), Axis::Step, vec![(1, 1.0), (2, 20.0)])
    );
    let long = &out[1].2;
    assert_eq!(long.len(), 1000);
    assert_eq!(long.first(), Some(&(0, 0.0)));
    assert_eq!(long.last(), Some(&(999_999, 999_999.0)));
    assert!(long.windows(2).all(|p| p[0].0 < p[1].0));
    let w: Vec<String> = w.finish().iter().map(ToString::to_string).collect();
    assert_eq!(
        w,
        vec![
            "f: m: 1 NaN or infinite values left out",
            "f: long: 1000000 points thinned to 1000",
        ]
    );
}

#[test]
fn collector_refuses_series_past_the_limit_once() {
    let limits = Limits {
        max_series: 3,
        ..Limits::default()
    };
    let mut w = Warnings::new(Path::new("f"), &limits);
    let mut c = Collector::new(&limits);
    for i in 0..10 {
        c.push(&mut w, &format!("m{i}"), Axis::Step, 0, 1.0);
    }
    assert_eq!(c.finish(&mut w).len(), 3);
    let w = w.finish();
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].to_string(),
        "f: m3: more than 3 series: this one and later ones left out"
    );
}

#[test]
fn collector_holds_a_bounded_total() {
    let limits = Limits {
        max_points: 100_000,
        max_points_held: 10_000,
        ..Limits::default()
    };
    let mut w = Warnings::new(Path::new("f"), &limits);
    let mut c = Collector::new(&limits);
    for s in 0..50_000i64 {
        for m in ["a", "b", "c", "d"] {
            c.push(&mut w, m, Axis::Step, s, 1.0);
        }
        assert!(c.held <= 10_000);
    }
    let out = c.finish(&mut w);
    assert!(out.iter().all(|s| s.2.last() == Some(&(49_999, 1.0))));
}

#[test]
fn warnings_are_capped_with_a_count() {
    let limits = Limits {
        max_warnings: 2,
        ..Limits::default()
    };
    let mut w = Warnings::new(Path::new("x.csv"), &limits);
    for i in 1..=5 {
        w.add(Some(At::Line(i)), Problem::NoStep);
    }
    let s: Vec<String> = w.finish().iter().map(ToString::to_string).collect();
    assert_eq!(
        s,
        vec![
            "x.csv: line 1: no step: skipped",
            "x.csv: line 2: no step: skipped",
            "x.csv: 3 more warnings not shown",
        ]
    );
}

#[test]
fn lines_are_bounded() {
    let text = b"short\r\nxxxxxxxxxxxxxxxxxxxx\n\xff\xfe\nlast";
    let mut l = Lines::new(std::io::BufReader::with_capacity(4, &text[..]), 8);
    let mut got = Vec::new();
    while let Some((_, x)) = l.next_line() {
        got.push(match x.unwrap() {
            Line::Text(t) => t.to_owned(),
            Line::TooLong => "<long>".to_owned(),
            Line::NotUtf8 => "<utf8>".to_owned(),
            Line::Unterminated => "<cut>".to_owned(),
        });
    }
    assert_eq!(got, vec!["short", "<long>", "<utf8>", "<cut>"]);
    assert_eq!(l.line_no, 4);
}

#[test]
fn epoch_steps_take_the_last_step_of_each_epoch() {
    let s = vec![Series {
        metric: "epoch".into(),
        source: 0,
        x: Axis::Step,
        points: vec![(4, 0.0), (9, 0.0), (14, 1.0), (19, 1.0)],
    }];
    let m = epoch_steps(&s);
    assert_eq!(m.get(&0), Some(&9));
    assert_eq!(m.get(&1), Some(&19));
}
