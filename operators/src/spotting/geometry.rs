//! Plane geometry of text polygons: area, the intersection of convex polygons
//! (Sutherland-Hodgman clipping) and intersection over union, as the ICDAR 2015 protocol
//! compares boxes.

/// A point (x, y) in image pixels.
pub type Point = [f32; 2];

/// Signed area (positive when the vertices run counter-clockwise in a y-up frame).
fn signed_area(polygon: &[Point]) -> f32 {
    let n = polygon.len();
    (0..n)
        .map(|i| {
            let (a, b) = (polygon[i], polygon[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum::<f32>()
        / 2.0
}

/// Area of a simple polygon.
pub fn area(polygon: &[Point]) -> f32 {
    signed_area(polygon).abs()
}

/// The polygon with its vertices counter-clockwise (in the signed-area sense).
fn counter_clockwise(polygon: &[Point]) -> Vec<Point> {
    let mut out = polygon.to_vec();
    if signed_area(&out) < 0.0 {
        out.reverse();
    }
    out
}

/// The part of `subject` inside the convex polygon `clip` (both any orientation).
pub fn intersection(subject: &[Point], clip: &[Point]) -> Vec<Point> {
    let clip = counter_clockwise(clip);
    let mut output = counter_clockwise(subject);
    let n = clip.len();
    for i in 0..n {
        if output.is_empty() {
            break;
        }
        let (a, b) = (clip[i], clip[(i + 1) % n]);
        // Left of the directed edge a -> b is inside for a counter-clockwise polygon.
        let side = |p: Point| (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
        let input = std::mem::take(&mut output);
        for j in 0..input.len() {
            let (current, next) = (input[j], input[(j + 1) % input.len()]);
            let (sc, sn) = (side(current), side(next));
            if sc >= 0.0 {
                output.push(current);
            }
            if (sc >= 0.0) != (sn >= 0.0) {
                let t = sc / (sc - sn);
                output.push([
                    current[0] + t * (next[0] - current[0]),
                    current[1] + t * (next[1] - current[1]),
                ]);
            }
        }
    }
    output
}

/// Area of the intersection of two convex polygons.
pub fn intersection_area(a: &[Point], b: &[Point]) -> f32 {
    let overlap = intersection(a, b);
    if overlap.len() < 3 {
        0.0
    } else {
        area(&overlap)
    }
}

/// Intersection over union of two convex polygons (0 when both are empty).
pub fn iou(a: &[Point], b: &[Point]) -> f32 {
    let inter = intersection_area(a, b);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
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
