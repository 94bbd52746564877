//! Where a pool's nodes come from. `local` starts `openbatch agent` processes
//! on this machine; nodes that join from elsewhere (`openbatch agent` started
//! by an operator) need no provider.

pub mod local;
