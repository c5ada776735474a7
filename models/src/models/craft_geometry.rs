//! Plane geometry for text boxes: convex hulls, OpenCV's `minAreaRect` (rotating calipers) and
//! the intersection over union of convex polygons (quadrilateral boxes).

/// A point in image coordinates (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    pub fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    pub fn distance(self, other: Point) -> f64 {
        (self.x - other.x).hypot(self.y - other.y)
    }

    fn sub(self, o: Point) -> Point {
        Point::new(self.x - o.x, self.y - o.y)
    }

    fn dot(self, o: Point) -> f64 {
        self.x * o.x + self.y * o.y
    }

    fn cross(self, o: Point) -> f64 {
        self.x * o.y - self.y * o.x
    }
}

/// The shoelace area of `polygon`, positive when its corners run clockwise as
/// seen on an image (y down).
pub fn signed_area(polygon: &[Point]) -> f64 {
    let n = polygon.len();
    (0..n)
        .map(|i| polygon[i].cross(polygon[(i + 1) % n]))
        .sum::<f64>()
        / 2.0
}

/// The convex hull of `points` (Andrew's monotone chain), without collinear points, in
/// counter-clockwise order of the y-up plane. Only each row's leftmost and rightmost points can
/// be on the hull of a pixel set, so a caller may pass those alone.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    sorted.dedup();
    if sorted.len() < 3 {
        return sorted;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(2 * sorted.len());
    for pass in [
        &sorted[..],
        &sorted.iter().rev().copied().collect::<Vec<_>>()[..],
    ] {
        let floor = hull.len();
        for &p in pass {
            while hull.len() >= floor + 2 {
                let (a, b) = (hull[hull.len() - 2], hull[hull.len() - 1]);
                if b.sub(a).cross(p.sub(a)) > 0.0 {
                    break;
                }
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The rectangle of least area containing `points` (OpenCV's `minAreaRect` then `boxPoints`),
/// its four corners in order around it. One side of the least rectangle lies on a hull edge, so
/// each edge's orientation is tried. Degenerate sets give a flat or point rectangle.
pub fn min_area_rect(points: &[Point]) -> [Point; 4] {
    let hull = convex_hull(&row_extremes(points));
    match hull.len() {
        0 => return [Point::new(0.0, 0.0); 4],
        1 => return [hull[0]; 4],
        _ => {}
    }
    let mut best = (f64::MAX, [hull[0]; 4]);
    for i in 0..hull.len() {
        let edge = hull[(i + 1) % hull.len()].sub(hull[i]);
        let len = edge.dot(edge).sqrt();
        if len == 0.0 {
            continue;
        }
        let u = Point::new(edge.x / len, edge.y / len);
        let n = Point::new(-u.y, u.x);
        let (mut lo_u, mut hi_u, mut lo_n, mut hi_n) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for p in &hull {
            let (a, b) = (p.dot(u), p.dot(n));
            (lo_u, hi_u) = (lo_u.min(a), hi_u.max(a));
            (lo_n, hi_n) = (lo_n.min(b), hi_n.max(b));
        }
        let area = (hi_u - lo_u) * (hi_n - lo_n);
        if area < best.0 {
            let at = |a: f64, b: f64| Point::new(a * u.x + b * n.x, a * u.y + b * n.y);
            best = (
                area,
                [
                    at(lo_u, lo_n),
                    at(hi_u, lo_n),
                    at(hi_u, hi_n),
                    at(lo_u, hi_n),
                ],
            );
        }
    }
    best.1
}

/// Each row's leftmost and rightmost point (all the hull of a pixel set can use).
fn row_extremes(points: &[Point]) -> Vec<Point> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.y.total_cmp(&b.y).then(a.x.total_cmp(&b.x)));
    let mut out = Vec::new();
    for row in sorted.chunk_by(|a, b| a.y == b.y) {
        out.push(row[0]);
        if row.len() > 1 {
            out.push(row[row.len() - 1]);
        }
    }
    out
}

/// Intersection over union of two convex polygons (either orientation); 0 when both are empty.
pub fn convex_iou(a: &[Point], b: &[Point]) -> f64 {
    let (area_a, area_b) = (signed_area(a).abs(), signed_area(b).abs());
    let inter = signed_area(&convex_intersection(a, b)).abs();
    let union = area_a + area_b - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Sutherland-Hodgman: the part of `subject` inside the convex polygon `window` (either
/// orientation).
pub fn convex_intersection(subject: &[Point], window: &[Point]) -> Vec<Point> {
    let orientation = signed_area(window).signum();
    let mut out = subject.to_vec();
    for i in 0..window.len() {
        let (a, b) = (window[i], window[(i + 1) % window.len()]);
        let side = |p: Point| b.sub(a).cross(p.sub(a)) * orientation;
        let input = std::mem::take(&mut out);
        for j in 0..input.len() {
            let (p, q) = (input[j], input[(j + 1) % input.len()]);
            let (sp, sq) = (side(p), side(q));
            if sp >= 0.0 {
                out.push(p);
            }
            if (sp >= 0.0) != (sq >= 0.0) {
                let t = sp / (sp - sq);
                out.push(Point::new(p.x + t * (q.x - p.x), p.y + t * (q.y - p.y)));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        v.iter().map(|&(x, y)| Point::new(x, y)).collect()
    }

    #[test]
    fn hull_drops_inner_and_collinear_points() {
        let hull = convex_hull(&pts(&[
            (0., 0.),
            (2., 0.),
            (1., 0.),
            (1., 1.),
            (2., 2.),
            (0., 2.),
        ]));
        assert_eq!(hull.len(), 4);
        assert_eq!(signed_area(&hull).abs(), 4.0);
    }

    #[test]
    fn min_area_rect_of_a_rotated_rectangle() {
        // cv2.minAreaRect([[0,0],[4,2],[3,4],[-1,2]]): sides sqrt(5) x sqrt(20), area 10.
        let rect = min_area_rect(&pts(&[(0., 0.), (4., 2.), (3., 4.), (-1., 2.), (1.5, 2.)]));
        assert!((signed_area(&rect).abs() - 10.0).abs() < 1e-9);
        for corner in pts(&[(0., 0.), (4., 2.), (3., 4.), (-1., 2.)]) {
            assert!(rect.iter().any(|p| p.distance(corner) < 1e-9), "{corner:?}");
        }
    }

    #[test]
    fn iou_of_overlapping_squares() {
        let a = pts(&[(0., 0.), (2., 0.), (2., 2.), (0., 2.)]);
        let b = pts(&[(1., 0.), (1., 2.), (3., 2.), (3., 0.)]);
        assert!((convex_iou(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(convex_iou(&a, &a), 1.0);
        assert_eq!(convex_iou(&a, &pts(&[(5., 5.), (6., 5.), (6., 6.)])), 0.0);
    }
}
