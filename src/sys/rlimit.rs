//! The open-file limit (`RLIMIT_NOFILE`): read it, and raise the soft
//! limit to the hard one, as a daemon holding an fd per TAP queue, per
//! worker and per client needs.

use std::io;

use super::fd::cvt;

/// The soft and hard `RLIMIT_NOFILE` (`u64::MAX` for unlimited).
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`, a valid, writable rlimit.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) })?;
    Ok((r.rlim_cur, r.rlim_max))
}

/// Sets the soft `RLIMIT_NOFILE` to `soft`, keeping the hard limit.
/// Fails with `EINVAL` above the hard limit.
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile()?;
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads `r`, a valid rlimit, and changes only this process's limit.
    cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }).map(drop)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit in effect afterwards.
pub fn raise_nofile() -> io::Result<u64> {
    let (soft, hard) = nofile()?;
    if soft >= hard {
        return Ok(soft);
    }
    set_nofile_soft(hard)?;
    Ok(hard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_can_be_read_and_raised_to_the_hard_one() {
        let (soft, hard) = nofile().unwrap();
        assert!(soft <= hard);
        // Setting it to what it is changes nothing and must work.
        set_nofile_soft(soft).unwrap();
        assert_eq!(nofile().unwrap(), (soft, hard));
    }
}
