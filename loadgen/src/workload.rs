//! What the generator asks for: profiles, mixes, card choice, and the request stream.
//!
//! Why a pure function of `(seed, k)`: a run must be repeatable ("same seed ⇒ same request
//! stream") whatever the number of connections and whoever sends item `k`. Item `k` draws
//! from its own ChaCha stream (`set_stream(k)`), so workers need no shared generator and the
//! stream does not depend on scheduling.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Index of a card inside a run (`0..cards`); each target maps it to its own id.
pub type CardIx = u64;

/// Money in minor units (fen); never a float.
pub type Minor = i64;

/// Principal each card is loaded with before the timed phase: 1000.00.
pub const FUNDING_MINOR: Minor = 100_000;
/// The spend each card makes in setup so that refunds have something to refund: 100.00.
pub const SETUP_SPEND_MINOR: Minor = 10_000;

/// One kind of request on the wire; the unit the statistics count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Spend,
    TopUp,
    Hold,
    Capture,
    Refund,
    Reversal,
}

impl OpKind {
    /// Every kind, in declaration order, for code that must cover each one.
    pub const ALL: [OpKind; 6] = [
        OpKind::Spend,
        OpKind::TopUp,
        OpKind::Hold,
        OpKind::Capture,
        OpKind::Refund,
        OpKind::Reversal,
    ];
    /// The kind's name in reports and tables (`"top_up"`), as serde spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Spend => "spend",
            OpKind::TopUp => "top_up",
            OpKind::Hold => "hold",
            OpKind::Capture => "capture",
            OpKind::Refund => "refund",
            OpKind::Reversal => "reversal",
        }
    }
}

/// One item of the stream: what a gateway would do for one customer action. Some actions
/// take two requests (a hold then its capture; a spend then its timeout reversal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Spend {
        card: CardIx,
        amount: Minor,
    },
    TopUp {
        card: CardIx,
        amount: Minor,
    },
    /// Hold `amount`, then capture `capture` (≤ `amount`) of it.
    HoldCapture {
        card: CardIx,
        amount: Minor,
        capture: Minor,
    },
    /// Refund `amount` of the card's setup spend.
    Refund {
        card: CardIx,
        amount: Minor,
    },
    /// Spend `amount`, then reverse that spend as a gateway does after a timeout.
    SpendReversal {
        card: CardIx,
        amount: Minor,
    },
}

impl Action {
    /// The card the action is on (both requests of a two-request action use it).
    pub fn card(&self) -> CardIx {
        match *self {
            Action::Spend { card, .. }
            | Action::TopUp { card, .. }
            | Action::HoldCapture { card, .. }
            | Action::Refund { card, .. }
            | Action::SpendReversal { card, .. } => card,
        }
    }
}

/// Item `seq` of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    pub seq: u64,
    pub action: Action,
}

/// How cards are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Dist {
    Uniform,
    /// Zipf over card ranks with exponent `theta`: rank 1 is the hottest card.
    Zipf {
        theta: f64,
    },
}

impl FromStr for Dist {
    type Err = String;
    fn from_str(s: &str) -> Result<Dist, String> {
        if s == "uniform" {
            return Ok(Dist::Uniform);
        }
        let Some(t) = s.strip_prefix("zipf:") else {
            return Err(format!("expected uniform or zipf:THETA, got {s:?}"));
        };
        let theta: f64 = t.parse().map_err(|_| format!("bad Zipf exponent {t:?}"))?;
        if !(theta > 0.0 && theta <= 10.0) {
            return Err(format!("Zipf exponent must be in (0, 10], got {theta}"));
        }
        Ok(Dist::Zipf { theta })
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Uniform => write!(f, "uniform"),
            Dist::Zipf { theta } => write!(f, "zipf:{theta}"),
        }
    }
}

/// A named workload shape; each picks its mix, default card distribution and the rules of
/// the program it creates on svault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// 70 % spend, 20 % top-up, 5 % hold + capture, 5 % refund; plain rules, uniform cards.
    Steady,
    /// A top-up campaign: 40 % top-ups of 100–1000 over a bonus ladder, hot cards (Zipf 0.99),
    /// spends in an evening discount window.
    Campaign,
    /// After the campaign: 45 % refunds, 20 % spend + timeout reversal, 30 % spends, 5 % top-ups.
    RefundStorm,
}

impl Profile {
    /// The name `--profile` takes and reports record (`"refund-storm"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Steady => "steady",
            Profile::Campaign => "campaign",
            Profile::RefundStorm => "refund-storm",
        }
    }
    /// The profile's action weights, used when `--mix` is not given.
    pub fn mix(self) -> Mix {
        let w = |s: &str| s.parse::<Mix>().unwrap_or_default();
        match self {
            Profile::Steady => w("spend=70,top_up=20,hold_capture=5,refund=5"),
            Profile::Campaign => w("spend=50,top_up=40,hold_capture=5,refund=5"),
            Profile::RefundStorm => w("refund=45,reversal=20,spend=30,top_up=5"),
        }
    }
    /// The profile's card choice, used when `--dist` is not given (a campaign's cards are hot).
    pub fn default_dist(self) -> Dist {
        match self {
            Profile::Campaign => Dist::Zipf { theta: 0.99 },
            Profile::Steady | Profile::RefundStorm => Dist::Uniform,
        }
    }
}

/// The kinds of action a mix can weigh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Spend,
    TopUp,
    HoldCapture,
    Refund,
    Reversal,
}

impl ActionKind {
    fn parse(s: &str) -> Option<ActionKind> {
        Some(match s {
            "spend" => ActionKind::Spend,
            "top_up" | "top-up" | "topup" => ActionKind::TopUp,
            "hold_capture" | "hold" | "hold+capture" => ActionKind::HoldCapture,
            "refund" => ActionKind::Refund,
            "reversal" => ActionKind::Reversal,
            _ => return None,
        })
    }
}

/// Relative weights of actions, e.g. `spend=70,top_up=20,hold_capture=5,refund=5`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mix(pub BTreeMap<ActionKind, u32>);

impl Mix {
    fn total(&self) -> u32 {
        self.0.values().sum()
    }
    /// Whether the mix ever draws `k` (a weight above zero): a target that cannot carry it says so
    /// in the report.
    pub fn has(&self, k: ActionKind) -> bool {
        self.0.get(&k).is_some_and(|&w| w > 0)
    }
    /// The action kind for a draw `x` in `0..total`.
    fn pick(&self, mut x: u32) -> ActionKind {
        for (&k, &w) in &self.0 {
            if x < w {
                return k;
            }
            x -= w;
        }
        ActionKind::Spend
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut m = BTreeMap::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected NAME=WEIGHT, got {part:?}"))?;
            let kind = ActionKind::parse(k.trim()).ok_or_else(|| {
                format!("unknown action {k:?} (spend, top_up, hold_capture, refund, reversal)")
            })?;
            let w: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad weight {v:?} for {k}"))?;
            *m.entry(kind).or_insert(0) += w;
        }
        let mix = Mix(m);
        if mix.total() == 0 {
            return Err("the mix has no positive weight".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, w)| {
                format!(
                    "{}={w}",
                    serde_json::to_value(k)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                )
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Maps Zipf ranks to card indexes so that the hot cards are spread over the id space (and
/// so over svault's shards) instead of being the first few ids.
#[derive(Debug, Clone, Copy)]
struct Scatter {
    step: u64,
    cards: u64,
}

impl Scatter {
    fn new(cards: u64) -> Scatter {
        // A step near cards × 0.618 (the golden ratio) coprime with `cards`: consecutive
        // ranks land far apart, and the map is a permutation.
        let cards = cards.max(1);
        let mut step = ((cards as f64 * 0.618_033_988_7) as u64).max(1);
        while gcd(step, cards) != 1 {
            step += 1;
        }
        Scatter { step, cards }
    }
    fn card(self, rank0: u64) -> CardIx {
        ((u128::from(rank0) * u128::from(self.step)) % u128::from(self.cards.max(1))) as u64
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The request stream of one run.
#[derive(Debug, Clone)]
pub struct Workload {
    pub cards: u64,
    pub dist: Dist,
    pub mix: Mix,
    pub profile: Profile,
    pub seed: u64,
    zipf: Option<Zipf<f64>>,
    scatter: Scatter,
    total: u32,
}

impl Workload {
    /// A workload over `cards` cards (≥ 1).
    pub fn new(
        cards: u64,
        dist: Dist,
        mix: Mix,
        profile: Profile,
        seed: u64,
    ) -> Result<Workload, String> {
        if cards == 0 {
            return Err("--cards must be at least 1".into());
        }
        let zipf = match dist {
            Dist::Uniform => None,
            Dist::Zipf { theta } => {
                Some(Zipf::new(cards, theta).map_err(|e| format!("Zipf({theta}): {e}"))?)
            }
        };
        let total = mix.total();
        if total == 0 {
            return Err("the mix has no positive weight".into());
        }
        Ok(Workload {
            cards,
            dist,
            mix,
            profile,
            seed,
            zipf,
            scatter: Scatter::new(cards),
            total,
        })
    }

    /// The card for rank draw: uniform, or Zipf rank scattered over the cards.
    fn card(&self, rng: &mut ChaCha8Rng) -> CardIx {
        match &self.zipf {
            None => rng.gen_range(0..self.cards),
            Some(z) => {
                let rank = z.sample(rng) as u64; // 1..=cards
                self.scatter.card(rank.clamp(1, self.cards) - 1)
            }
        }
    }

    /// Rank (0 = hottest) → card index, for tests of the sampler.
    pub fn card_of_rank(&self, rank0: u64) -> CardIx {
        match self.dist {
            Dist::Uniform => rank0,
            Dist::Zipf { .. } => self.scatter.card(rank0),
        }
    }

    /// Item `seq` of the stream: a pure function of the seed and `seq`.
    pub fn item(&self, seq: u64) -> Item {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(seq);
        let kind = self.mix.pick(rng.gen_range(0..self.total));
        let card = self.card(&mut rng);
        let campaign = self.profile == Profile::Campaign;
        let action = match kind {
            ActionKind::Spend => Action::Spend {
                card,
                amount: rng.gen_range(100..=5_000),
            },
            ActionKind::TopUp => Action::TopUp {
                card,
                // Campaign top-ups clear the ladder's 100.00 minimum.
                amount: if campaign {
                    rng.gen_range(100..=1_000) * 100
                } else {
                    rng.gen_range(10..=500) * 100
                },
            },
            ActionKind::HoldCapture => {
                let amount = rng.gen_range(1_000..=20_000);
                let capture = rng.gen_range(amount / 2..=amount);
                Action::HoldCapture {
                    card,
                    amount,
                    capture,
                }
            }
            ActionKind::Refund => Action::Refund {
                card,
                amount: rng.gen_range(1..=500),
            },
            ActionKind::Reversal => Action::SpendReversal {
                card,
                amount: rng.gen_range(100..=5_000),
            },
        };
        Item { seq, action }
    }

    /// Whether setup must make a spend on every card (something for refunds to refund).
    pub fn needs_setup_spend(&self) -> bool {
        self.mix.has(ActionKind::Refund)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_prints() {
        let m: Mix = "spend=70,top_up=20,hold=5,refund=5".parse().unwrap();
        assert_eq!(m.to_string(), "spend=70,top_up=20,hold_capture=5,refund=5");
        assert!("spend=0".parse::<Mix>().is_err());
        assert!("teleport=3".parse::<Mix>().is_err());
    }

    #[test]
    fn dist_parses() {
        assert_eq!("uniform".parse::<Dist>().unwrap(), Dist::Uniform);
        assert_eq!(
            "zipf:0.99".parse::<Dist>().unwrap(),
            Dist::Zipf { theta: 0.99 }
        );
        assert!("zipf:-1".parse::<Dist>().is_err());
        assert!("zipf".parse::<Dist>().is_err());
    }

    #[test]
    fn scatter_is_a_permutation() {
        for cards in [1u64, 2, 7, 1000, 4096, 99_991] {
            let s = Scatter::new(cards);
            let mut seen = vec![false; cards as usize];
            for r in 0..cards {
                let c = s.card(r) as usize;
                assert!(!seen[c], "card {c} hit twice for {cards} cards");
                seen[c] = true;
            }
        }
    }
}
