//! Plane geometry of text polygons as the ICDAR 2015 protocol compares them: area,
//! intersection and intersection over union of convex polygons, on `[x, y]` pairs (the
//! clipping is CRAFT's, [`crate::models::craft_geometry`]).

use crate::models::craft_geometry::{
    Point as GeoPoint, convex_intersection, convex_iou, signed_area,
};

/// A point (x, y) in image pixels.
pub type Point = [f32; 2];

fn points(polygon: &[Point]) -> Vec<GeoPoint> {
    polygon
        .iter()
        .map(|p| GeoPoint::new(f64::from(p[0]), f64::from(p[1])))
        .collect()
}

/// Area of a simple polygon.
pub fn area(polygon: &[Point]) -> f32 {
    signed_area(&points(polygon)).abs() as f32
}

/// Area of the intersection of two convex polygons.
pub fn intersection_area(a: &[Point], b: &[Point]) -> f32 {
    let overlap = convex_intersection(&points(a), &points(b));
    if overlap.len() < 3 {
        0.0
    } else {
        signed_area(&overlap).abs() as f32
    }
}

/// Intersection over union of two convex polygons (0 when both are empty).
pub fn iou(a: &[Point], b: &[Point]) -> f32 {
    convex_iou(&points(a), &points(b)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f32, y: f32, side: f32) -> Vec<Point> {
        vec![[x, y], [x + side, y], [x + side, y + side], [x, y + side]]
    }

    #[test]
    fn overlapping_squares() {
        let a = square(0.0, 0.0, 2.0);
        let b = square(1.0, 1.0, 2.0);
        assert!((area(&a) - 4.0).abs() < 1e-6);
        assert!((intersection_area(&a, &b) - 1.0).abs() < 1e-6);
        assert!((iou(&a, &b) - 1.0 / 7.0).abs() < 1e-6);
        assert_eq!(iou(&a, &square(5.0, 5.0, 1.0)), 0.0);
        assert!((iou(&a, &a) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn orientation_does_not_matter() {
        let a = square(0.0, 0.0, 2.0);
        let mut b = square(1.0, 0.0, 2.0);
        b.reverse();
        assert!((intersection_area(&a, &b) - 2.0).abs() < 1e-6);
        // A diamond inside the square: its whole area.
        let diamond = vec![[1.0, 0.0], [2.0, 1.0], [1.0, 2.0], [0.0, 1.0]];
        assert!((intersection_area(&a, &diamond) - 2.0).abs() < 1e-6);
    }
}
