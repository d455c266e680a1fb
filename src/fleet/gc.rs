//! `coltecd fleet gc`: removes what nobody owns any more.
