//! Orders and leases (SH-CL-06, -07, -10, -14, -16, -17; Itm): the records and their own
//! transitions. An order takes cards; approved (at once or by the supplier) it becomes a
//! lease with the same number, which keeps the price quote it was made at. A class A lease
//! waits for the supplier's authorization code before access is granted and its cards turn
//! busy; a class B lease is busy from its start. Release, expiry and budget exhaustion end
//! it. Orchestration across catalog, ledger and budgets is in `market`.

use crate::account::AccountId;
use crate::billing::TenantId;
use crate::billing::rate;
use crate::catalog::CardId;
use crate::evaluation::{Evaluation, Monitoring};
use crate::keyed::{HashedIdentifier, IdentifierKind, KeyedHasher};
use crate::listing::{ClusterClass, CpcId, PriceQuote};
use crate::money::Money;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderId(pub u64);

/// A lease has its order's number: one order makes at most one lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub u64);

impl From<OrderId> for LeaseId {
    fn from(o: OrderId) -> LeaseId {
        LeaseId(o.0)
    }
}

impl LeaseId {
    pub fn order(self) -> OrderId {
        OrderId(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// The listing wants the supplier's approval; the cards are held meanwhile.
    AwaitingApproval,
    Leased(LeaseId),
    /// Refused by the supplier; the cards were freed.
    Rejected {
        reason: String,
    },
    /// Withdrawn by the user before the supplier decided; the cards were freed.
    Cancelled,
    /// The supplier did not decide within `APPROVAL_WINDOW_S`; the cards were freed.
    Lapsed,
}

/// How long an order waits for the supplier's approval while holding its cards: a day, so
/// a supplier who never answers cannot keep cards from everyone else.
pub const APPROVAL_WINDOW_S: i64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user: AccountId,
    pub tenant: TenantId,
    pub supplier: AccountId,
    pub listing: CpcId,
    pub class: ClusterClass,
    pub cards: Vec<CardId>,
    pub quote: PriceQuote,
    /// Prepaid periods (months or years); 0 for hourly.
    pub periods: u32,
    pub placed_at: Timestamp,
    pub state: OrderState,
}

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Released,
    /// A prepaid term ran out.
    Expired,
    /// The tenant's monthly budget is spent.
    BudgetExhausted,
    /// The tenant's funds and credits are used up.
    FundsDepleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseState {
    /// Class A: the user has not yet entered the supplier's authorization code.
    AwaitingAccess {
        attempts_left: u32,
    },
    /// Class A: too many wrong codes; the supplier must issue a new one.
    Locked,
    /// Access granted (class A) or started (class B); the cards are busy.
    Active {
        since: Timestamp,
    },
    Ended {
        at: Timestamp,
        reason: EndReason,
    },
}

/// Wrong authorization codes allowed before the lease locks: 5 tries at a 50-bit code.
pub const MAX_AUTHORIZATION_ATTEMPTS: u32 = 5;

/// Characters of an authorization code: Crockford's base32 (no I, L, O, U), 10 of them = 50
/// bits, readable over the phone.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 10;

/// A new authorization code from 32 bytes of the caller's randomness.
pub(crate) fn authorization_code(entropy: &[u8; 32]) -> String {
    entropy[..CODE_LEN]
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(b & 31)]))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub user: AccountId,
    pub tenant: TenantId,
    pub supplier: AccountId,
    pub listing: CpcId,
    pub class: ClusterClass,
    pub cards: Vec<CardId>,
    pub quote: PriceQuote,
    /// Billing starts here (SH-CL-16).
    pub started_at: Timestamp,
    /// The end of a prepaid term; `None` for hourly leases, which run until released.
    pub ends_at: Option<Timestamp>,
    pub state: LeaseState,
    /// Class A only: the keyed hash of the authorization code; never the code.
    pub(crate) authorization: Option<HashedIdentifier>,
    /// Hourly metering: use is charged up to here.
    pub(crate) metered_until: Timestamp,
    pub(crate) card_seconds: u64,
    pub(crate) charged: Money,
    /// Class B: what monitoring saw while it ran (`evaluation`).
    pub(crate) monitoring: Monitoring,
    /// Class B, once ended: its evaluation (SH-CL-18).
    pub(crate) evaluation: Option<Evaluation>,
}

/// One stretch of metered time inside a calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accrual {
    pub(crate) start: Timestamp,
    pub(crate) end: Timestamp,
    pub(crate) card_seconds: u64,
    pub(crate) amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("lease {0:?} is not yours")]
    NotYours(LeaseId),
    #[error("lease {0:?} needs no authorization code (class B) or has been granted access already")]
    NotAwaitingAccess(LeaseId),
    #[error("too many wrong authorization codes; ask the supplier for a new code")]
    Locked,
    #[error("wrong authorization code; {attempts_left} attempt(s) left")]
    WrongCode { attempts_left: u32 },
}

impl Lease {
    /// Still billed and holding its cards.
    pub fn is_running(&self) -> bool {
        !matches!(self.state, LeaseState::Ended { .. })
    }

    /// What monitoring saw of the lease so far (class B; empty for class A).
    pub fn monitoring(&self) -> &Monitoring {
        &self.monitoring
    }

    /// The evaluation made when the lease ended (class B only).
    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluation.as_ref()
    }

    /// Charged so far (cumulative, prepaid terms included).
    pub fn charged(&self) -> Money {
        self.charged
    }

    pub fn card_count(&self) -> u32 {
        u32::try_from(self.cards.len()).expect("bounded by MAX_CARDS_PER_LISTING")
    }

    /// Checks an authorization code (SH-CL-06) in constant time; bounded attempts. On
    /// success the lease is active from `now`; the caller turns the cards busy.
    pub(crate) fn enter_code(
        &mut self,
        user: AccountId,
        code: &str,
        hasher: &KeyedHasher,
        now: Timestamp,
    ) -> Result<(), AccessError> {
        if user != self.user {
            return Err(AccessError::NotYours(self.id));
        }
        let attempts_left = match self.state {
            LeaseState::AwaitingAccess { attempts_left } => attempts_left,
            LeaseState::Locked => return Err(AccessError::Locked),
            _ => return Err(AccessError::NotAwaitingAccess(self.id)),
        };
        let stored = self
            .authorization
            .as_ref()
            .expect("a class A lease awaiting access has a code");
        if hasher.matches(stored, code) {
            self.state = LeaseState::Active { since: now };
            return Ok(());
        }
        let left = attempts_left - 1;
        self.state = if left == 0 {
            LeaseState::Locked
        } else {
            LeaseState::AwaitingAccess {
                attempts_left: left,
            }
        };
        Err(AccessError::WrongCode {
            attempts_left: left,
        })
    }

    /// A new code replaces the old one and restores the attempts (the supplier's action).
    pub(crate) fn reissue_code(
        &mut self,
        entropy: &[u8; 32],
        hasher: &KeyedHasher,
    ) -> Option<String> {
        if !matches!(
            self.state,
            LeaseState::AwaitingAccess { .. } | LeaseState::Locked
        ) {
            return None;
        }
        let code = authorization_code(entropy);
        self.authorization = Some(hasher.hash(IdentifierKind::AuthorizationCode, &code));
        self.state = LeaseState::AwaitingAccess {
            attempts_left: MAX_AUTHORIZATION_ATTEMPTS,
        };
        Some(code)
    }

    /// Hourly metering up to `until` (or the lease's end if earlier), split at month
    /// boundaries; each stretch is charged the cumulative rounding difference
    /// (`rate::hourly_cumulative`). Nothing for prepaid leases: their term was charged
    /// at the start.
    pub(crate) fn accrue(&mut self, until: Timestamp) -> Vec<Accrual> {
        if self.quote.mode != crate::listing::BillingMode::Hourly {
            return Vec::new();
        }
        let mut out = Vec::new();
        let cards = u64::from(self.card_count());
        while self.metered_until < until {
            let start = self.metered_until;
            let end = until.min(start.month().end());
            let card_seconds = end.seconds_since(start) * cards;
            self.card_seconds += card_seconds;
            let total = rate::hourly_cumulative(self.quote.unit_price, self.card_seconds);
            let amount = total - self.charged;
            self.charged = total;
            self.metered_until = end;
            out.push(Accrual {
                start,
                end,
                card_seconds,
                amount,
            });
        }
        out
    }
}
