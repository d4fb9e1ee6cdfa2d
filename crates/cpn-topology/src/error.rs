//! Why the builder refused a site or link; a plain enum so the crate needs no dependencies.

use crate::graph::SiteIndex;
use cpn_model::GeoPoint;
use std::fmt;

/// Input the [`TopologyBuilder`](crate::TopologyBuilder) refused. The builder is left as it
/// was before the failing call, so a caller may report the error and carry on.
#[derive(Debug, Clone, PartialEq)]
pub enum TopologyError {
    /// A site key was the empty string.
    EmptySiteKey,
    /// A second site was added under a key already in use.
    DuplicateSite { key: String },
    /// A site's location is not a valid latitude/longitude (NaN counts as invalid).
    InvalidLocation { key: String, location: GeoPoint },
    /// An index did not come from this builder.
    UnknownSite { site: SiteIndex, sites: usize },
    /// A link joined a site to itself.
    SelfLink { key: String },
    /// A link attribute is out of range.
    InvalidLinkAttr {
        from: String,
        to: String,
        field: &'static str,
        value: f64,
    },
    /// More sites or links than a `u32` index can name.
    TooMany { what: &'static str },
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::EmptySiteKey => f.write_str("site key must not be empty"),
            TopologyError::DuplicateSite { key } => {
                write!(f, "site {key:?} is already defined")
            }
            TopologyError::InvalidLocation { key, location } => write!(
                f,
                "site {key:?} has location lat={} lon={}, but latitude must be within \
                 -90..=90 and longitude within -180..=180",
                location.lat, location.lon
            ),
            TopologyError::UnknownSite { site, sites } => write!(
                f,
                "link endpoint {site} is not a site of this topology (it has {sites} sites)"
            ),
            TopologyError::SelfLink { key } => write!(
                f,
                "link from site {key:?} to itself: a link must join two different sites"
            ),
            TopologyError::InvalidLinkAttr {
                from,
                to,
                field,
                value,
            } => {
                let rule = if *field == "loss_pct" {
                    "must be between 0 and 100"
                } else {
                    "must be a finite number >= 0"
                };
                write!(f, "link {from:?} -> {to:?}: {field} {rule}, got {value}")
            }
            TopologyError::TooMany { what } => {
                write!(f, "too many {what}: at most {} are supported", u32::MAX)
            }
        }
    }
}

impl std::error::Error for TopologyError {}
