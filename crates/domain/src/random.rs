//! Randomness from the operating system's CSPRNG (getrandom), the only source Latch uses for
//! secrets, recovery codes and project secrets (R-OTP-5, R-N-7).

use crate::Error;

/// `N` random bytes; fails only if the OS generator is unavailable.
pub fn bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format!("os random generator failed: {e}")))?;
    Ok(buf)
}
