//! How a client config reaches the user: the `.conf` file's name and the QR code image of the
//! same text. Both are built in memory; nothing here logs or stores the config.

use std::io::Cursor;

use image::{ImageFormat, Luma};
use pvpn_common::RegionCode;
use qrcode::{EcLevel, QrCode};

/// `wg-quick` takes the interface name from the file name and accepts at most 15 characters of
/// `[a-zA-Z0-9_=+.-]`; keeping to that lets users run `wg-quick up ./<file>` as downloaded.
const MAX_STEM: usize = 15;

/// Side of the QR image in pixels, at least; big enough for phone cameras.
const QR_MIN_PIXELS: u32 = 440;

/// `<region>-<device>.conf`, reduced to characters every WireGuard client accepts in a tunnel
/// name (others become `_`), at most 15 before `.conf`.
pub fn config_file_name(region: &RegionCode, device_name: &str) -> String {
    let mut device = String::new();
    for c in device_name.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        // Collapse runs of replacements: "my phone!!" -> "my_phone_".
        if !(c == '_' && device.ends_with('_')) {
            device.push(c);
        }
    }
    let device = device.trim_matches('_');
    let stem = if device.is_empty() {
        region.as_str().to_string()
    } else {
        format!("{region}-{device}")
    };
    let stem: String = stem.chars().take(MAX_STEM).collect();
    format!("{}.conf", stem.trim_end_matches(['-', '_']))
}

/// Why a QR code could not be made (a config too long for any QR version).
#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the config does not fit in a QR code: {0}")]
    Encode(#[from] qrcode::types::QrError),
    #[error("PNG encoding failed: {0}")]
    Png(#[from] image::ImageError),
}

/// A PNG image of a QR code holding exactly `text`.
pub fn qr_png(text: &str) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let image = code
        .render::<Luma<u8>>()
        .min_dimensions(QR_MIN_PIXELS, QR_MIN_PIXELS)
        .build();
    let mut png = Cursor::new(Vec::new());
    image.write_to(&mut png, ImageFormat::Png)?;
    Ok(png.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: &str) -> RegionCode {
        code.parse().unwrap()
    }

    #[test]
    fn file_names_are_safe_tunnel_names() {
        let nl = region("nl");
        assert_eq!(config_file_name(&nl, "phone"), "nl-phone.conf");
        assert_eq!(config_file_name(&nl, "my phone!!"), "nl-my_phone.conf");
        assert_eq!(
            config_file_name(&nl, "../../etc/passwd"),
            "nl-etc_passwd.conf"
        );
        assert_eq!(config_file_name(&nl, "телефон"), "nl.conf");
        assert_eq!(config_file_name(&nl, ""), "nl.conf");
        assert_eq!(
            config_file_name(&nl, "a-very-long-device-name"),
            "nl-a-very-long.conf"
        );
        let long = region("netherlands-amsterdam");
        assert_eq!(config_file_name(&long, "x"), "netherlands-ams.conf");
        for name in ["x", "a b", "ü", "--", "laptop-2"] {
            let file = config_file_name(&nl, name);
            let stem = file.strip_suffix(".conf").unwrap();
            assert!((1..=MAX_STEM).contains(&stem.len()), "{file}");
            assert!(
                stem.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b)),
                "{file}"
            );
        }
    }

    #[test]
    fn qr_is_a_png() {
        let png = qr_png("[Interface]\nPrivateKey = x\n").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
