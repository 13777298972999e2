//! A UDP relay in front of one QUIC endpoint, the cable a bench can pull: it passes datagrams
//! both ways between the latest client and the target, drops them all (a cut link), or flips
//! bytes in some of them (a noisy line: QUIC must refuse each as unauthenticated).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::Result;
use tokio::net::UdpSocket;

/// What the relay does with each datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Passes it unchanged.
    Pass = 0,
    /// Drops it.
    Cut = 1,
    /// Passes one in four with a byte flipped, the others unchanged.
    Noisy = 2,
}

pub struct Relay {
    /// Where clients send (the address to put in their configuration).
    pub addr: SocketAddr,
    line: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Result<Relay> {
        let front = UdpSocket::bind("127.0.0.1:0").await?;
        let back = UdpSocket::bind("127.0.0.1:0").await?;
        back.connect(target).await?;
        let addr = front.local_addr()?;
        let line = Arc::new(AtomicU8::new(Line::Pass as u8));
        let mode = line.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let mut count = 0u64;
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { return };
                        client = Some(from);
                        count += 1;
                        if pass(mode.load(Ordering::Relaxed), count, &mut a[..n]) {
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { continue };
                        count += 1;
                        if let Some(c) = client
                            && pass(mode.load(Ordering::Relaxed), count, &mut b[..n])
                        {
                            let _ = front.send_to(&b[..n], c).await;
                        }
                    }
                }
            }
        });
        Ok(Relay { addr, line, task })
    }

    pub fn set(&self, line: Line) {
        self.line.store(line as u8, Ordering::Relaxed);
    }

    pub fn set_cut(&self, cut: bool) {
        self.set(if cut { Line::Cut } else { Line::Pass });
    }
}

/// Whether datagram number `count` goes on (flipping a byte of it on a noisy line).
fn pass(mode: u8, count: u64, datagram: &mut [u8]) -> bool {
    if mode == Line::Cut as u8 {
        return false;
    }
    if mode == Line::Noisy as u8 && count.is_multiple_of(4) && !datagram.is_empty() {
        let at = (count as usize / 4) % datagram.len();
        datagram[at] ^= 0x5a;
    }
    true
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
