//! Request and decline counters of the HTTP front door, rendered as Prometheus text.
//!
//! Why fixed tables of atomics: the hot path increments a counter per request; a lock or a
//! map insert there would serialize every connection. Routes are known at start-up.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use svault_core::outcome::DeclineCode;

/// Status codes counted individually; anything else lands in the last slot as `other`.
const STATUSES: [u16; 14] = [
    200, 400, 401, 402, 403, 404, 405, 409, 413, 415, 429, 500, 503, 0,
];

/// Counters by route × status, and declines by code.
pub struct HttpMetrics {
    routes: Vec<&'static str>,
    requests: Vec<[AtomicU64; STATUSES.len()]>,
    declines: [AtomicU64; DeclineCode::ALL.len()],
}

fn zeros<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

impl HttpMetrics {
    /// `routes`: every route pattern (`/v1/cards/{id}`); unknown paths count as `unmatched`.
    pub fn new(routes: &[&'static str]) -> HttpMetrics {
        let mut all: Vec<&'static str> = routes.to_vec();
        all.push("unmatched");
        HttpMetrics {
            requests: all.iter().map(|_| zeros()).collect(),
            routes: all,
            declines: zeros(),
        }
    }

    /// Counts one answered request.
    pub fn count(&self, route: Option<&str>, status: u16) {
        let r = route
            .and_then(|p| self.routes.iter().position(|x| *x == p))
            .unwrap_or(self.routes.len() - 1);
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len() - 1);
        if let Some(slot) = self.requests.get(r).and_then(|row| row.get(s)) {
            slot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one decline.
    pub fn decline(&self, code: DeclineCode) {
        if let Some(pos) = DeclineCode::ALL.iter().position(|c| *c == code) {
            if let Some(slot) = self.declines.get(pos) {
                slot.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Appends the counters as Prometheus text.
    pub fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP svault_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE svault_http_requests_total counter\n");
        for (route, row) in self.routes.iter().zip(&self.requests) {
            for (status, n) in STATUSES.iter().zip(row) {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = if *status == 0 {
                        "other".to_string()
                    } else {
                        status.to_string()
                    };
                    let _ = writeln!(
                        out,
                        "svault_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                    );
                }
            }
        }
        out.push_str("# HELP svault_declines_total Declined operations (402), by decline code.\n");
        out.push_str("# TYPE svault_declines_total counter\n");
        for (code, n) in DeclineCode::ALL.iter().zip(&self.declines) {
            let _ = writeln!(
                out,
                "svault_declines_total{{code=\"{}\"}} {}",
                code.as_str(),
                n.load(Ordering::Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_status_and_decline() {
        let m = HttpMetrics::new(&["/v1/cards", "/v1/cards/{id}"]);
        m.count(Some("/v1/cards"), 200);
        m.count(Some("/v1/cards"), 200);
        m.count(Some("/nope"), 404);
        m.count(Some("/v1/cards/{id}"), 418);
        m.decline(DeclineCode::InsufficientFunds);
        let mut s = String::new();
        m.render(&mut s);
        assert!(s.contains("svault_http_requests_total{route=\"/v1/cards\",status=\"200\"} 2\n"));
        assert!(s.contains("svault_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"));
        assert!(
            s.contains("svault_http_requests_total{route=\"/v1/cards/{id}\",status=\"other\"} 1\n")
        );
        assert!(s.contains("svault_declines_total{code=\"insufficient_funds\"} 1\n"));
        assert!(s.contains("svault_declines_total{code=\"reversed\"} 0\n"));
    }
}
