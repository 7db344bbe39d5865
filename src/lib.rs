pub mod frames;
pub mod names;
pub mod token;
