use std::time::Duration;

use super::*;

const MIN: Duration = Duration::from_millis(200);
const MAX: Duration = Duration::from_secs(5);

#[test]
fn every_wait_lies_between_the_bounds_and_the_first_is_short() {
    for _ in 0..200 {
        let waits: Vec<_> = schedule(MIN, MAX).take(40).collect();
        assert!(waits.iter().all(|w| (MIN..=MAX).contains(w)), "{waits:?}");
        assert!(waits[0] < MIN * 2, "{waits:?}");
        // Grown to the top half of the range once the cap is reached.
        assert!(waits[10..].iter().all(|w| *w >= MAX / 2), "{waits:?}");
    }
}

#[test]
fn the_waits_are_jittered() {
    let firsts: std::collections::HashSet<_> = (0..50).map(|_| schedule(MIN, MAX).next()).collect();
    assert!(firsts.len() > 1, "50 schedules began with the same wait");
}

#[test]
fn a_maximum_below_twice_the_minimum_still_bounds_every_wait() {
    let min = Duration::from_secs(1);
    for max in [
        Duration::from_secs(1),
        Duration::from_millis(1500),
        Duration::ZERO,
    ] {
        assert!(schedule(min, max)
            .take(20)
            .all(|w| w >= min && w <= max.max(min)));
    }
}

#[test]
fn the_nth_wait_follows_the_schedule_bounds() {
    let max = Duration::from_secs(30);
    let min = Duration::from_secs(1);
    assert!(nth_wait(0, min, max) < min * 2);
    let third = nth_wait(3, min, max);
    assert!((min * 8..min * 16).contains(&third), "{third:?}");
    assert!(nth_wait(10, min, max) >= max / 2);
    assert!(nth_wait(usize::MAX, min, max) <= max);
}
