//! Certificate templates: what the hub CA, the hub's server certificate and client certificates
//! contain, and the hub's set of server names.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::DnsName;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{CertSerial, ClientRole, PkiError, HUB_SERVER_NAME};

/// Lifetime of the hub CA. Agents pin it, so replacing it means re-enrolling the fleet.
pub(crate) const CA_VALIDITY: Duration = Duration::from_secs(3653 * 24 * 60 * 60);
/// Lifetime of the hub's server certificate. Agents pin the CA, not this certificate, so a short
/// lifetime buys little; a long one means a hub that is never restarted does not strand its fleet.
pub(crate) const SERVER_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 60 * 60);
/// On load, a server certificate with less than this left is re-issued.
pub(crate) const SERVER_RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Every certificate is valid from this long before issue, for devices whose clocks run behind.
const BACKDATE: Duration = Duration::from_secs(60 * 60);
/// The longest lifetime we will put in a client certificate.
const MAX_VALIDITY: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// One subject-alternative-name entry of the server certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ServerName {
    Dns(String),
    Ip(IpAddr),
}

/// The full, normalised SAN set of the hub's server certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerNames(BTreeSet<ServerName>);

impl ServerNames {
    /// [`HUB_SERVER_NAME`], `localhost`, 127.0.0.1, ::1 and every name given (DNS or IP).
    pub(crate) fn new(names: &[String]) -> Result<Self, PkiError> {
        let mut set = BTreeSet::from([
            ServerName::Dns(HUB_SERVER_NAME.to_owned()),
            ServerName::Dns("localhost".to_owned()),
            ServerName::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ServerName::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        for name in names {
            set.insert(parse_name(name)?);
        }
        Ok(Self(set))
    }

    /// The DNS and IP SANs of an existing certificate, normalised the same way.
    pub(crate) fn of_cert(cert: &X509Certificate<'_>) -> Option<Self> {
        let san = cert.subject_alternative_name().ok()??;
        let names = san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(ServerName::Dns(dns.to_ascii_lowercase())),
                GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(ServerName::Ip),
                _ => None,
            });
        Some(Self(names.collect()))
    }

    fn sans(&self) -> Result<Vec<SanType>, PkiError> {
        self.0
            .iter()
            .map(|name| match name {
                ServerName::Dns(dns) => Ok(SanType::DnsName(dns.clone().try_into()?)),
                ServerName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect()
    }
}

fn parse_name(raw: &str) -> Result<ServerName, PkiError> {
    let trimmed = raw.trim();
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ServerName::Ip(ip));
    }
    let dns = trimmed.trim_end_matches('.').to_ascii_lowercase();
    match DnsName::try_from(dns.as_str()) {
        Ok(_) if !dns.is_empty() => Ok(ServerName::Dns(dns)),
        _ => Err(PkiError::InvalidName(raw.to_owned())),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The hub CA: `CN=Outpost hub CA <8 hex digits>`, path length 0 (it signs only end entities).
///
/// The random suffix tells two hubs' CAs apart in a certificate viewer or a browser's trust store.
pub(crate) fn ca_params() -> Result<CertificateParams, PkiError> {
    let mut suffix = [0u8; 4];
    crate::pem::fill_random(&mut suffix)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut params = base_params(&format!("Outpost hub CA {suffix}"))?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY, None)?;
    Ok(params)
}

/// The hub's server certificate: `CN=outpost-hub`, every server name, EKU serverAuth.
pub(crate) fn server_params(
    names: &ServerNames,
    ca_not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut params = base_params(HUB_SERVER_NAME)?;
    params.subject_alt_names = names.sans()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, SERVER_VALIDITY, Some(ca_not_after))?;
    Ok(params)
}

/// A client certificate: `CN=<role text>`, the role's SAN URI, EKU clientAuth.
///
/// `validity` is capped at the CA's own expiry.
pub(crate) fn client_params(
    role: &ClientRole,
    validity: Duration,
    ca_not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    role.validate()?;
    if validity.is_zero() || validity > MAX_VALIDITY {
        return Err(PkiError::InvalidValidity(validity));
    }
    let mut params = base_params(&role.to_string())?;
    params.subject_alt_names = vec![SanType::URI(role.san_uri().try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity, Some(ca_not_after))?;
    Ok(params)
}

fn base_params(common_name: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(CertSerial::random()?.as_bytes()));
    Ok(params)
}

fn set_validity(
    params: &mut CertificateParams,
    lifetime: Duration,
    cap: Option<OffsetDateTime>,
) -> Result<(), PkiError> {
    let now = OffsetDateTime::now_utc();
    let not_after = now
        .checked_add(
            time::Duration::try_from(lifetime).map_err(|_| PkiError::InvalidValidity(lifetime))?,
        )
        .ok_or(PkiError::InvalidValidity(lifetime))?;
    params.not_before = now - BACKDATE;
    params.not_after = cap.map_or(not_after, |cap| not_after.min(cap));
    Ok(())
}

/// The notAfter of a parsed certificate.
pub(crate) fn not_after(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = cert.validity().not_after.timestamp();
    match u64::try_from(secs) {
        Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// Whether a certificate still has at least `margin` of its life left.
pub(crate) fn lasts_at_least(cert: &X509Certificate<'_>, margin: Duration) -> bool {
    not_after(cert)
        .duration_since(SystemTime::now())
        .is_ok_and(|left| left >= margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    #[test]
    fn names_are_normalised_and_validated() {
        let names = ServerNames::new(&[
            "Hub.Example.COM.".to_owned(),
            "[2001:db8::1]".to_owned(),
            "198.51.100.7".to_owned(),
        ])
        .unwrap();
        assert!(names
            .0
            .contains(&ServerName::Dns("hub.example.com".to_owned())));
        assert!(names
            .0
            .contains(&ServerName::Ip("2001:db8::1".parse().unwrap())));
        assert!(names
            .0
            .contains(&ServerName::Dns(HUB_SERVER_NAME.to_owned())));
        assert_eq!(names.0.len(), 7);
        for bad in ["", "hub:4433", "bad name", "a..b"] {
            assert!(
                matches!(
                    ServerNames::new(&[bad.to_owned()]),
                    Err(PkiError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn client_validity_is_checked() {
        let role = ClientRole::Admin("ops".to_owned());
        let far = OffsetDateTime::now_utc() + CA_VALIDITY;
        assert!(matches!(
            client_params(&role, Duration::ZERO, far),
            Err(PkiError::InvalidValidity(_))
        ));
        assert!(client_params(&role, MAX_VALIDITY * 2, far).is_err());
        let capped = client_params(&role, 50 * 365 * DAY, far).unwrap();
        assert_eq!(capped.not_after, far);
    }
}
