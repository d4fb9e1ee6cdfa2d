//! The edge's handle on the services: the control services' state, which holds the
//! runtime's (store, running work, transport). A type of this crate, so the edge's
//! extractors may be implemented for the services' types (`NodeCaller`, `Registrant`).

/// Dereferences to the control services' state (and through it to the runtime's), so a
/// handler hands `&s` to any service.
#[derive(Clone)]
pub struct AppState(pub cpn_control::state::Control);

impl std::ops::Deref for AppState {
    type Target = cpn_control::state::Control;
    fn deref(&self) -> &cpn_control::state::Control {
        &self.0
    }
}
