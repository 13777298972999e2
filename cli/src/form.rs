//! Declaration fields as command-line flags, and the other values typed on the command line
//! that clap does not check itself (times, temperatures, holder ids, interface names).

use anyhow::{Result, anyhow};
use clap::Args;
use menjin_net::clock::now_ms;
use menjin_proto::credential::HolderId;
use menjin_proto::declaration::{Declaration, Gender, PersonType, Quarantine, Tenure};
use menjin_proto::idnum::DocumentType;

use crate::exit::usage;

#[derive(Args, Debug, Clone)]
pub struct FormArgs {
    /// Full name as on the document.
    #[arg(long)]
    pub name: String,
    /// male or female.
    #[arg(long, value_parser = ["male", "female"])]
    pub gender: String,
    /// resident_id, hk_macao_permit, taiwan_permit or passport.
    #[arg(long, default_value = "resident_id")]
    pub doc_type: String,
    /// Document number (18 characters for a resident ID).
    #[arg(long)]
    pub doc_number: String,
    /// YYYY-MM-DD; required unless the document is a resident ID.
    #[arg(long)]
    pub birth_date: Option<String>,
    #[arg(long, default_value = "CN")]
    pub nationality: String,
    #[arg(long)]
    pub phone: String,
    /// owner, tenant, household or shop_staff.
    #[arg(long, default_value = "owner", value_parser = ["owner", "tenant", "household", "shop_staff"])]
    pub person_type: String,
    /// none, home, central or hospital.
    #[arg(long, default_value = "none", value_parser = ["none", "home", "central", "hospital"])]
    pub quarantine: String,
    #[arg(long)]
    pub building: String,
    #[arg(long)]
    pub door: String,
    /// owned or rented.
    #[arg(long, default_value = "owned", value_parser = ["owned", "rented"])]
    pub tenure: String,
    /// Passed through a high-risk area in the last 14 days.
    #[arg(long)]
    pub travel_high_risk: bool,
    /// Close contact with a confirmed or suspected case.
    #[arg(long)]
    pub contact_with_case: bool,
    /// Fever, cough or shortness of breath.
    #[arg(long)]
    pub symptoms: bool,
    #[arg(long, default_value = "")]
    pub conditions: String,
}

impl FormArgs {
    pub fn to_declaration(&self) -> Result<Declaration> {
        Ok(Declaration {
            name: self.name.clone(),
            gender: if self.gender == "male" {
                Gender::Male
            } else {
                Gender::Female
            },
            document_type: DocumentType::parse(&self.doc_type).map_err(|e| anyhow!(e))?,
            document_number: self.doc_number.clone(),
            birth_date: self.birth_date.clone(),
            nationality: self.nationality.clone(),
            phone: self.phone.clone(),
            person_type: match self.person_type.as_str() {
                "tenant" => PersonType::Tenant,
                "household" => PersonType::Household,
                "shop_staff" => PersonType::ShopStaff,
                _ => PersonType::Owner,
            },
            quarantine: match self.quarantine.as_str() {
                "home" => Quarantine::Home,
                "central" => Quarantine::Central,
                "hospital" => Quarantine::Hospital,
                _ => Quarantine::None,
            },
            building: self.building.clone(),
            door: self.door.clone(),
            tenure: if self.tenure == "rented" {
                Tenure::Rented
            } else {
                Tenure::Owned
            },
            travel_high_risk: self.travel_high_risk,
            contact_with_case: self.contact_with_case,
            symptoms: self.symptoms,
            underlying_conditions: self.conditions.clone(),
        })
    }
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Parses a time: `now`, `+30m`, `+4h`, `+2d` (from now), or Unix seconds.
pub fn parse_time(s: &str, now: u64) -> Result<u64> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Some(rel) = s.strip_prefix('+') {
        let (num, unit) = rel.split_at(rel.len().saturating_sub(1));
        let n: u64 = num
            .parse()
            .map_err(|_| anyhow!("{s:?}: expected +N followed by m, h or d"))?;
        let secs = match unit {
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            _ => return Err(anyhow!("{s:?}: the unit must be m, h or d")),
        };
        return n
            .checked_mul(secs)
            .and_then(|d| now.checked_add(d))
            .ok_or_else(|| anyhow!("{s:?}: too far"));
    }
    s.parse()
        .map_err(|_| anyhow!("{s:?}: expected now, +4h, +30m, +2d or Unix seconds"))
}

/// Parses a temperature in °C ("36.6") into tenths of a degree.
pub fn parse_temperature(s: &str) -> Result<i16> {
    let t: f32 = s
        .trim()
        .parse()
        .map_err(|_| anyhow!("temperature {s:?} is not a number like 36.6"))?;
    if !t.is_finite() || !(30.0..=45.0).contains(&t) {
        return Err(anyhow!(
            "temperature {s} °C is outside 30.0 to 45.0: measure again"
        ));
    }
    Ok((t * 10.0).round() as i16)
}

pub fn parse_holder(s: &str) -> Result<HolderId> {
    s.parse()
        .map_err(|e: menjin_proto::credential::HexIdError| usage(format!("--holder: {e}")))
}

/// `eth0,wlan0`, `all` or `lo`: interface names for mDNS, checked as the config files are.
pub fn parse_interfaces(s: &str) -> Result<Vec<String>> {
    let names: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    menjin_store::files::check_interfaces("interfaces", true, &names).map_err(usage)?;
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("now", 100).unwrap(), 100);
        assert_eq!(parse_time("+2h", 100).unwrap(), 7_300);
        assert_eq!(parse_time("5000", 100).unwrap(), 5_000);
        assert!(parse_time("+2y", 100).is_err());
        assert!(parse_time("tomorrow", 100).is_err());
        assert!(parse_time("+", 100).is_err());
    }

    #[test]
    fn temperatures_parse() {
        assert_eq!(parse_temperature("36.6").unwrap(), 366);
        assert_eq!(parse_temperature("37.3").unwrap(), 373);
        assert!(parse_temperature("hot").is_err());
        assert!(parse_temperature("3.7").is_err());
        assert!(parse_temperature("NaN").is_err());
    }
}
