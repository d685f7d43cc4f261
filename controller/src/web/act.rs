//! The shape every console action has, written once: the gate (the session's role and the
//! form's CSRF token, checked first; else the refusal ends the request), the audit subject
//! (`web:USER`), the domain call, and its failure audited. Macros, because the call borrows the
//! audit row the macro makes.

/// The signed-in session allowed `role` with the form's `csrf`, or return the refusal.
macro_rules! gate {
    ($web:expr, $headers:expr, $role:expr, $csrf:expr) => {
        match super::pages::gate_change(&$web, &$headers, $role, $csrf) {
            Ok(s) => s,
            Err(r) => return *r,
        }
    };
}

/// Gate, audit as `$action` on `$target`, run `$call` (an async expression using the audit
/// row `$a`), audit a failure; gives `(session, result)`.
macro_rules! act {
    ($web:expr, $headers:expr, $role:expr, $csrf:expr, $action:expr, $target:expr, |$a:ident| $call:expr) => {{
        let s = gate!($web, $headers, $role, $csrf);
        let $a = s.audit($action, $target);
        let r = $call.await;
        crate::audit::record_failure(&$web.ctl.store, &$a, &r).await;
        (s, r)
    }};
}
