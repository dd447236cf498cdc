//! The request stream: reproducible from the seed, and cards chosen as the distribution says.

use loadgen::workload::{Action, Dist, Mix, Profile, Workload};

fn workload(cards: u64, dist: Dist, mix: &str, seed: u64) -> Workload {
    Workload::new(
        cards,
        dist,
        mix.parse::<Mix>().expect("mix"),
        Profile::Steady,
        seed,
    )
    .expect("workload")
}

#[test]
fn same_seed_same_stream_other_seed_other_stream() {
    let mix = "spend=70,top_up=20,hold_capture=5,refund=5";
    let a = workload(100_000, Dist::Zipf { theta: 0.99 }, mix, 42);
    let b = workload(100_000, Dist::Zipf { theta: 0.99 }, mix, 42);
    let c = workload(100_000, Dist::Zipf { theta: 0.99 }, mix, 43);
    let sa: Vec<_> = (0..20_000).map(|k| a.item(k)).collect();
    // Generated in another order (as workers would): the same items.
    let mut sb: Vec<_> = (0..20_000).rev().map(|k| b.item(k)).collect();
    sb.reverse();
    assert_eq!(sa, sb);
    let sc: Vec<_> = (0..20_000).map(|k| c.item(k)).collect();
    let same = sa.iter().zip(&sc).filter(|(x, y)| x == y).count();
    assert!(same < 200, "seeds 42 and 43 share {same} of 20000 items");
}

#[test]
fn the_mix_is_respected() {
    let w = workload(
        1000,
        Dist::Uniform,
        "spend=70,top_up=20,hold_capture=5,refund=5",
        7,
    );
    let n = 100_000u64;
    let mut counts = [0u64; 4];
    for k in 0..n {
        let i = match w.item(k).action {
            Action::Spend { .. } => 0,
            Action::TopUp { .. } => 1,
            Action::HoldCapture { .. } => 2,
            Action::Refund { .. } => 3,
            Action::SpendReversal { .. } => panic!("no reversal in this mix"),
        };
        counts[i] += 1;
    }
    for (c, want) in counts.iter().zip([70u64, 20, 5, 5]) {
        let expected = n * want / 100;
        let sd = ((expected as f64) * (1.0 - want as f64 / 100.0)).sqrt();
        assert!((*c as f64 - expected as f64).abs() < 5.0 * sd, "{counts:?}");
    }
}

/// Zipf(θ) over N ranks: P(rank r) = r^-θ / H(N, θ). Checks the frequencies of the ten
/// hottest cards and of the rest with a chi-square test (11 buckets, 10 degrees of freedom;
/// 29.6 is the 0.999 quantile), and that the hottest card's share is the theoretical one.
#[test]
fn zipf_card_choice_follows_the_distribution() {
    let (cards, theta) = (1000u64, 0.99f64);
    let w = workload(cards, Dist::Zipf { theta }, "spend=1", 11);
    let h: f64 = (1..=cards).map(|r| (r as f64).powf(-theta)).sum();
    let p: Vec<f64> = (1..=10).map(|r| (r as f64).powf(-theta) / h).collect();
    let rank_of: std::collections::HashMap<u64, usize> =
        (0..10).map(|r| (w.card_of_rank(r), r as usize)).collect();
    let n = 200_000u64;
    let mut observed = [0u64; 11];
    for k in 0..n {
        let card = w.item(k).action.card();
        observed[*rank_of.get(&card).unwrap_or(&10)] += 1;
    }
    let mut expected: Vec<f64> = p.iter().map(|q| q * n as f64).collect();
    expected.push(n as f64 * (1.0 - p.iter().sum::<f64>()));
    let chi2: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| (o as f64 - e).powi(2) / e)
        .sum();
    assert!(
        chi2 < 29.6,
        "chi-square {chi2:.1} over 10 dof: observed {observed:?} expected {expected:?}"
    );
    let share = observed[0] as f64 / n as f64;
    assert!(
        (share - p[0]).abs() < 0.01,
        "rank 1 share {share:.4}, theory {:.4}",
        p[0]
    );
    // The hot cards are spread over the id space, not the first ids.
    let hottest: Vec<u64> = (0..10).map(|r| w.card_of_rank(r)).collect();
    assert!(
        hottest.iter().filter(|&&c| c < 100).count() <= 2,
        "hot cards bunched at the low ids: {hottest:?}"
    );
}

#[test]
fn uniform_card_choice_covers_every_card_evenly() {
    let cards = 50u64;
    let w = workload(cards, Dist::Uniform, "spend=1", 3);
    let n = 100_000u64;
    let mut seen = vec![0u64; cards as usize];
    for k in 0..n {
        seen[w.item(k).action.card() as usize] += 1;
    }
    let e = n as f64 / cards as f64;
    let chi2: f64 = seen.iter().map(|&o| (o as f64 - e).powi(2) / e).sum();
    // 49 dof: the 0.999 quantile is about 85.4.
    assert!(chi2 < 85.4, "chi-square {chi2:.1}: {seen:?}");
}
