//! Amounts of money in integer minor units (fen for CNY), never floats: every sum the ledger
//! checks for zero must be exact, and every rounding happens in one named place.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg, Sub};

/// An amount in minor units (1/100 of the currency unit). Signed: the ledger moves money
/// out of an account with a negative posting. `i64` holds ±92 trillion yuan, so the sums of
/// a platform's year cannot overflow; the arithmetic still checks and panics with the reason
/// rather than wrapping silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_minor(minor: i64) -> Money {
        Money(minor)
    }

    /// Whole currency units (yuan) to minor units.
    pub const fn from_major(major: i64) -> Money {
        Money(major * 100)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `None` on overflow: where an amount comes from a request (a top-up), the ledger refuses
    /// it instead of panicking.
    pub fn checked_add(self, rhs: Money) -> Option<Money> {
        self.0.checked_add(rhs.0).map(Money)
    }

    /// `self × numerator / denominator`, rounded half away from zero, computed in `i128` so
    /// the product never overflows. The one rounding rule of the crate: proration to the
    /// second, commission in basis points and budget percentages all go through it.
    pub fn mul_div_round(self, numerator: u64, denominator: u64) -> Money {
        assert!(denominator > 0, "mul_div_round by zero");
        let product = i128::from(self.0) * i128::from(numerator);
        let d = i128::from(denominator);
        let half = d / 2;
        let rounded = if product >= 0 {
            (product + half) / d
        } else {
            (product - half) / d
        };
        Money(i64::try_from(rounded).expect("a prorated amount exceeds i64 minor units"))
    }

    /// `self × factor`, for unit price × cards × periods.
    pub fn times(self, factor: u64) -> Money {
        let product = i128::from(self.0) * i128::from(factor);
        Money(i64::try_from(product).expect("a price times a quantity exceeds i64 minor units"))
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(
            self.0
                .checked_add(rhs.0)
                .expect("money sum overflows i64 minor units"),
        )
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(
            self.0
                .checked_sub(rhs.0)
                .expect("money difference overflows i64 minor units"),
        )
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(self.0.checked_neg().expect("money negation overflows"))
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

/// `12.34`, `-0.05`: major units with two decimals, as invoices and CSV show them.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(Money(250).mul_div_round(1, 100), Money(3));
        assert_eq!(Money(249).mul_div_round(1, 100), Money(2));
        assert_eq!(Money(-250).mul_div_round(1, 100), Money(-3));
        // One second of a 36.00/h card is exactly 1 fen.
        assert_eq!(Money::from_major(36).mul_div_round(1, 3600), Money(1));
    }

    #[test]
    fn displays_two_decimals() {
        assert_eq!(Money(-5).to_string(), "-0.05");
        assert_eq!(Money::from_major(42_500).to_string(), "42500.00");
    }
}
