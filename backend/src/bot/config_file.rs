//! How a client config reaches the user: the `.conf` file's name and the QR code image of the
//! same text. Both are built in memory; nothing here logs or stores the config.

use std::io::Cursor;

use image::{ImageFormat, Luma};
use pvpn_common::RegionCode;
use qrcode::{EcLevel, QrCode};

/// `wg-quick` takes the interface name from the file name and accepts at most 15 characters of
/// `[a-zA-Z0-9_=+.-]`; keeping to that lets users run `wg-quick up ./<file>` as downloaded, and
/// the WireGuard apps name the imported tunnel after it.
const MAX_STEM: usize = 15;

/// Side of the QR image in pixels, at least; big enough for phone cameras.
const QR_MIN_PIXELS: u32 = 440;

/// What a config file is named after: one of the user's devices.
#[derive(Debug, Clone, Copy)]
pub struct NamedDevice<'a> {
    pub id: i64,
    pub region: &'a RegionCode,
    pub name: &'a str,
}

/// The `.conf` file name of `device`, unique among the user's `devices` (which may include
/// `device` itself): `<region>-<device name>`, transliterated to Latin and reduced to tunnel-name
/// characters, at most 15 before `.conf`. Devices whose names come out the same are told apart
/// by their ids: the oldest keeps the plain name, the others get `-<id>`, so a name does not
/// change when another device comes or goes (unless the older twin is revoked).
pub fn config_file_name(device: NamedDevice<'_>, devices: &[NamedDevice<'_>]) -> String {
    let mut others: Vec<NamedDevice<'_>> = devices
        .iter()
        .copied()
        .filter(|d| d.id != device.id)
        .collect();
    others.push(device);
    others.sort_by_key(|d| d.id);
    let mut taken = std::collections::BTreeSet::new();
    for d in &others {
        let stem = unique_stem(*d, &taken);
        if d.id == device.id {
            return format!("{stem}.conf");
        }
        taken.insert(stem);
    }
    // Unreachable: `device` is in `others`. Its id makes the name unique anyway.
    format!(
        "{}.conf",
        with_suffix(&plain_stem(device), &format!("-{}", device.id))
    )
}

/// The first of `<plain>`, `<plain>-<id>`, `<plain>-<id>-2`, ... that is not taken.
fn unique_stem(device: NamedDevice<'_>, taken: &std::collections::BTreeSet<String>) -> String {
    let plain = plain_stem(device);
    if !taken.contains(&plain) {
        return plain;
    }
    let mut n = 1u32;
    loop {
        let suffix = if n == 1 {
            format!("-{}", device.id)
        } else {
            format!("-{}-{n}", device.id)
        };
        let stem = with_suffix(&plain, &suffix);
        if !taken.contains(&stem) {
            return stem;
        }
        n += 1;
    }
}

/// `stem` shortened so that `stem + suffix` fits the limit, keeping at least one character of
/// `stem` (and so the end of an overlong suffix: its digits that differ).
fn with_suffix(stem: &str, suffix: &str) -> String {
    let suffix = &suffix[suffix.len().saturating_sub(MAX_STEM - 1)..];
    let room = MAX_STEM - suffix.len();
    let head: String = stem.chars().take(room).collect();
    let head = match head.trim_end_matches(['-', '_']) {
        "" => &head,
        trimmed => trimmed,
    };
    format!("{head}{suffix}")
}

/// `<region>-<device>` (or `<region>` for a name with nothing usable), at most 15 characters.
fn plain_stem(device: NamedDevice<'_>) -> String {
    let mut name = String::new();
    for c in transliterate(device.name).chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '_'
        };
        // Collapse runs of replacements: "my phone!!" -> "my_phone_".
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    let name = name.trim_matches('_');
    let stem = if name.is_empty() {
        device.region.as_str().to_string()
    } else {
        format!("{}-{name}", device.region)
    };
    let stem: String = stem.chars().take(MAX_STEM).collect();
    stem.trim_end_matches(['-', '_']).to_string()
}

/// Russian (and the common Ukrainian and Belarusian) Cyrillic letters in Latin, by the scheme
/// of Russian passports (ICAO Doc 9303) with `й` as `y`, so "телефон" reads "telefon". Other
/// characters are kept as they are.
fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let lower = c.to_lowercase().next().unwrap_or(c);
        let latin = match lower {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' | 'ґ' => "g",
            'д' => "d",
            'е' | 'ё' | 'э' | 'є' => "e",
            'ж' => "zh",
            'з' => "z",
            'и' | 'і' => "i",
            'ї' => "yi",
            'й' | 'ы' => "y",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' | 'ў' => "u",
            'ф' => "f",
            'х' => "kh",
            'ц' => "ts",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "shch",
            'ъ' | 'ь' => "",
            'ю' => "iu",
            'я' => "ia",
            _ => {
                out.push(c);
                continue;
            }
        };
        if c != lower {
            // Capitalised as a word would be: "Жора" -> "Zhora".
            let mut letters = latin.chars();
            if let Some(first) = letters.next() {
                out.extend(first.to_uppercase());
                out.push_str(letters.as_str());
            }
        } else {
            out.push_str(latin);
        }
    }
    out
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

    fn name(id: i64, region: &RegionCode, device: &str) -> String {
        let d = NamedDevice {
            id,
            region,
            name: device,
        };
        config_file_name(d, &[d])
    }

    fn is_tunnel_name(file: &str) -> bool {
        file.strip_suffix(".conf").is_some_and(|stem| {
            (1..=MAX_STEM).contains(&stem.len())
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_=+.-".contains(&b))
        })
    }

    #[test]
    fn file_names_are_safe_tunnel_names() {
        let nl = region("nl");
        assert_eq!(name(1, &nl, "phone"), "nl-phone.conf");
        assert_eq!(name(1, &nl, "my phone!!"), "nl-my_phone.conf");
        assert_eq!(name(1, &nl, "../../etc/passwd"), "nl-etc_passwd.conf");
        assert_eq!(name(1, &nl, ""), "nl.conf");
        assert_eq!(
            name(1, &nl, "a-very-long-device-name"),
            "nl-a-very-long.conf"
        );
        let long = region("netherlands-amsterdam");
        assert_eq!(name(1, &long, "x"), "netherlands-ams.conf");
        for device in ["x", "a b", "ü", "--", "laptop-2", "телефон", "日本"] {
            let file = name(1, &nl, device);
            assert!(is_tunnel_name(&file), "{file}");
        }
    }

    #[test]
    fn cyrillic_names_are_transliterated() {
        let nl = region("nl");
        assert_eq!(name(1, &nl, "телефон"), "nl-telefon.conf");
        assert_eq!(name(1, &nl, "Ноутбук Жоры"), "nl-Noutbuk_Zhor.conf");
        assert_eq!(name(1, &nl, "щи"), "nl-shchi.conf");
        assert_eq!(name(1, &nl, "Ёжик"), "nl-Ezhik.conf");
        assert_eq!(name(1, &nl, "объём"), "nl-obem.conf");
        assert_eq!(
            transliterate("Съешь ещё этих мягких булок"),
            "Sesh eshche etikh miagkikh bulok"
        );
    }

    #[test]
    fn colliding_names_get_distinct_valid_names() {
        let nl = region("nl");
        let de = region("de");
        let devices = [
            NamedDevice {
                id: 7,
                region: &nl,
                name: "телефон",
            },
            NamedDevice {
                id: 12,
                region: &nl,
                name: "телефон",
            },
            NamedDevice {
                id: 15,
                region: &nl,
                name: "telefon",
            },
            NamedDevice {
                id: 20,
                region: &de,
                name: "телефон",
            },
            // Share their first letters: the same after the cut to 15.
            NamedDevice {
                id: 30,
                region: &nl,
                name: "work laptop one",
            },
            NamedDevice {
                id: 123456,
                region: &nl,
                name: "work laptop two",
            },
            // A name that is another device's disambiguated name.
            NamedDevice {
                id: 40,
                region: &nl,
                name: "telefon-12",
            },
        ];
        let names: Vec<String> = devices
            .iter()
            .map(|d| config_file_name(*d, &devices))
            .collect();
        assert_eq!(
            names,
            [
                "nl-telefon.conf",
                "nl-telefon-12.conf",
                "nl-telefon-15.conf",
                "de-telefon.conf",
                "nl-work_laptop.conf",
                "nl-work-123456.conf",
                "nl-telefon-1-40.conf",
            ]
        );
        let distinct: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(names.iter().all(|n| is_tunnel_name(n)), "{names:?}");
        // The oldest keeps its name whatever comes after it.
        assert_eq!(config_file_name(devices[0], &devices[..1]), names[0]);
    }

    #[test]
    fn the_limit_holds_for_long_regions_and_ids() {
        let long = region("netherlands-amsterdam");
        let devices = [
            NamedDevice {
                id: 1,
                region: &long,
                name: "a",
            },
            NamedDevice {
                id: i64::MAX,
                region: &long,
                name: "a",
            },
            NamedDevice {
                id: 99,
                region: &long,
                name: "b",
            },
        ];
        for d in devices {
            let file = config_file_name(d, &devices);
            assert!(is_tunnel_name(&file), "{file}");
        }
        let names: std::collections::BTreeSet<String> = devices
            .iter()
            .map(|d| config_file_name(*d, &devices))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }

    /// The real `wg-quick` takes each name as a tunnel name.
    #[test]
    fn wg_quick_accepts_the_names() {
        let nl = region("nl");
        let devices = [
            NamedDevice {
                id: 7,
                region: &nl,
                name: "телефон",
            },
            NamedDevice {
                id: 12,
                region: &nl,
                name: "телефон",
            },
            NamedDevice {
                id: 123456,
                region: &nl,
                name: "Ноутбук Жоры и Маши",
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let config = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n";
        for d in devices {
            let file = config_file_name(d, &devices);
            let path = dir.path().join(&file);
            std::fs::write(&path, config).unwrap();
            let out = std::process::Command::new("wg-quick")
                .arg("strip")
                .arg(&path)
                .output()
                .expect("wg-quick (wireguard-tools) is required: run scripts/setup.sh");
            assert!(
                out.status.success(),
                "wg-quick strip {file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn qr_is_a_png() {
        let png = qr_png("[Interface]\nPrivateKey = x\n").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
