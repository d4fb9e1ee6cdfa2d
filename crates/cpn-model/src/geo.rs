//! Geographic points and great-circle distance, used for sites and link latency estimates.

use serde::{Deserialize, Serialize};

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Latitude/longitude in degrees (WGS84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub lat: f64,
    pub lon: f64,
}

impl GeoPoint {
    pub fn new(lat: f64, lon: f64) -> Self {
        GeoPoint { lat, lon }
    }

    pub fn is_valid(&self) -> bool {
        (-90.0..=90.0).contains(&self.lat) && (-180.0..=180.0).contains(&self.lon)
    }

    /// Great-circle distance by the haversine formula.
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
    }
}

/// Round-trip latency a fibre path of this great-circle distance would show.
///
/// Light in fibre covers about 200 km per millisecond; real routes run about 1.5 times the
/// great-circle distance, and each end adds about 1 ms of switching. So RTT ≈ 2 × 1.5 × d / 200 + 2.
pub fn estimated_rtt_ms(distance_km: f64) -> f64 {
    2.0 * 1.5 * distance_km / 200.0 + 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_to_shanghai_is_about_1070_km() {
        let beijing = GeoPoint::new(39.9042, 116.4074);
        let shanghai = GeoPoint::new(31.2304, 121.4737);
        let d = beijing.distance_km(&shanghai);
        assert!((1060.0..1080.0).contains(&d), "{d}");
        assert!((d - shanghai.distance_km(&beijing)).abs() < 1e-9);
        assert_eq!(beijing.distance_km(&beijing), 0.0);
    }

    #[test]
    fn rtt_grows_with_distance() {
        assert_eq!(estimated_rtt_ms(0.0), 2.0);
        assert!((estimated_rtt_ms(1000.0) - 17.0).abs() < 1e-9);
    }

    #[test]
    fn validity() {
        assert!(GeoPoint::new(90.0, 180.0).is_valid());
        assert!(!GeoPoint::new(91.0, 0.0).is_valid());
        assert!(!GeoPoint::new(0.0, -181.0).is_valid());
    }
}
