//! The rating rules: what a quantity of use costs. Every amount of the marketplace is
//! computed here, from integer minor units, with the one rounding of `Money::mul_div_round`.

use crate::money::Money;

/// Seconds in the hour of an hourly unit price.
pub const SECONDS_PER_HOUR: u64 = 3600;

/// The cost of `card_seconds` at an hourly unit price per card, rounded once. Metering
/// charges the difference between this for the lease's cumulative card-seconds and what it
/// charged before, so a lease metered every minute costs exactly what one metered once at
/// its end costs — to the second, without rounding drift.
pub fn hourly_cumulative(unit_price_per_card_hour: Money, card_seconds: u64) -> Money {
    unit_price_per_card_hour.mul_div_round(card_seconds, SECONDS_PER_HOUR)
}

/// The prepaid price of a monthly or yearly term: unit price × cards × periods.
pub fn prepaid_term(unit_price_per_card_period: Money, cards: u32, periods: u32) -> Money {
    unit_price_per_card_period.times(u64::from(cards) * u64::from(periods))
}

/// The platform's commission on `gross`, in basis points (1/100 %).
pub fn commission(gross: Money, basis_points: u32) -> Money {
    gross.mul_div_round(u64::from(basis_points), 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_rounding_does_not_drift() {
        let price = Money::from_minor(1_000); // 10.00 per card-hour
        let mut charged = Money::ZERO;
        let mut seconds = 0;
        for _ in 0..3600 {
            seconds += 7; // metered every 7 s, 2 cards
            let total = hourly_cumulative(price, seconds * 2);
            charged = charged + (total - charged);
        }
        assert_eq!(charged, hourly_cumulative(price, 3600 * 7 * 2));
        assert_eq!(charged, Money::from_minor(14_000));
    }
}
