use schemas::events::Location;

use crate::values::ValueError;

/// Mean Earth radius used for every great-circle distance, so route lengths, ranges and
/// invoices agree everywhere.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Parses a point on Earth: latitude in [-90, 90], longitude in [-180, 180], altitude in
/// metres >= 0, all finite.
pub fn location(latitude: f64, longitude: f64, altitude: f64) -> Result<Location, ValueError> {
    if !latitude.is_finite() || !(-90.0..=90.0).contains(&latitude) {
        return Err(ValueError(format!(
            "latitude must be between -90 and 90, got {latitude}"
        )));
    }
    if !longitude.is_finite() || !(-180.0..=180.0).contains(&longitude) {
        return Err(ValueError(format!(
            "longitude must be between -180 and 180, got {longitude}"
        )));
    }
    if !altitude.is_finite() || altitude < 0.0 {
        return Err(ValueError(format!(
            "altitude must be a finite number of metres >= 0, got {altitude}"
        )));
    }
    Ok(Location {
        latitude,
        longitude,
        altitude,
    })
}

/// Checks a wire `Location` (which anyone can build) against the same rules as [`location`].
pub fn check_location(l: &Location) -> Result<Location, ValueError> {
    location(l.latitude, l.longitude, l.altitude)
}

/// Great-circle (haversine) distance in km; altitude is ignored, drones fly low.
pub fn distance_km(a: &Location, b: &Location) -> f64 {
    let (phi1, phi2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let d_phi = phi2 - phi1;
    let d_lambda = (b.longitude - a.longitude).to_radians();
    let h = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    // Rounding can push h a hair above 1 for antipodal points; asin would return NaN.
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

/// A point on the unit sphere: straight-line (chord) distance orders like great-circle
/// distance, so a 3-D index finds the nearest drone on Earth.
pub fn unit_vector(l: &Location) -> [f64; 3] {
    let (lat, lon) = (l.latitude.to_radians(), l.longitude.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

fn from_unit_vector(v: [f64; 3], altitude: f64) -> Location {
    let [x, y, z] = v;
    Location {
        latitude: z.atan2(x.hypot(y)).to_degrees(),
        longitude: y.atan2(x).to_degrees(),
        altitude,
    }
}

/// The point `km` from `from` on the great circle to `to` (spherical interpolation).
pub fn toward(from: &Location, to: &Location, km: f64) -> Location {
    let total_km = distance_km(from, to);
    if total_km <= f64::EPSILON {
        return *to;
    }
    let f = (km / total_km).clamp(0.0, 1.0);
    let (a, b) = (unit_vector(from), unit_vector(to));
    let delta = total_km / EARTH_RADIUS_KM;
    let (wa, wb) = (
        ((1.0 - f) * delta).sin() / delta.sin(),
        (f * delta).sin() / delta.sin(),
    );
    let v = [
        wa * a[0] + wb * b[0],
        wa * a[1] + wb * b[1],
        wa * a[2] + wb * b[2],
    ];
    from_unit_vector(v, from.altitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latitude: f64, longitude: f64) -> Location {
        Location {
            latitude,
            longitude,
            altitude: 0.0,
        }
    }

    #[test]
    fn distance_to_itself_is_zero() {
        assert_eq!(distance_km(&at(47.61, -122.33), &at(47.61, -122.33)), 0.0);
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = distance_km(&at(0.0, 0.0), &at(1.0, 0.0));
        assert!((d - 111.195).abs() < 0.01, "{d}");
    }

    #[test]
    fn antipodes_are_half_the_circumference_apart() {
        let d = distance_km(&at(0.0, 0.0), &at(0.0, 180.0));
        assert!(
            (d - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1e-6,
            "{d}"
        );
    }

    #[test]
    fn distance_is_symmetric() {
        let (a, b) = (at(47.61, -122.33), at(45.52, -122.68));
        assert_eq!(distance_km(&a, &b), distance_km(&b, &a));
    }

    #[test]
    fn toward_moves_along_the_great_circle_by_the_distance_asked() {
        let (a, b) = (at(47.60, -122.30), at(47.65, -122.40));
        let total = distance_km(&a, &b);
        let p = toward(&a, &b, 2.0);
        assert!((distance_km(&a, &p) - 2.0).abs() < 1e-6);
        assert!((distance_km(&p, &b) - (total - 2.0)).abs() < 1e-6);
        assert_eq!(toward(&a, &b, total * 2.0).latitude, b.latitude);
        // Across the antimeridian it stays a valid location.
        let p = toward(&at(0.0, 179.9), &at(0.0, -179.9), 5.0);
        assert!(location(p.latitude, p.longitude, 0.0).is_ok());
    }
}
