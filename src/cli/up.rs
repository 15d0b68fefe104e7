//! `kprov up`, `down`, `status`, `coverage` (being wired).

use super::args::{CoverageArgs, DownArgs, Global, ServiceArg, UpArgs};
use super::exit;

pub async fn up(_g: &Global, _a: UpArgs) -> i32 {
    exit::FAILURE
}
pub async fn down(_g: &Global, _a: &DownArgs) -> i32 {
    exit::FAILURE
}
pub async fn status(_g: &Global, _a: &ServiceArg) -> i32 {
    exit::FAILURE
}
pub async fn coverage(_g: &Global, _a: &CoverageArgs) -> i32 {
    exit::FAILURE
}
