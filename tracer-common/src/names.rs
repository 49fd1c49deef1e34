//! Names written once: [`named_enum!`] defines a fieldless enum together with
//! the one table of its names (the spelling users see in JSON and text), and
//! derives everything that spells them from that table.
//!
//! A name written in three places will one day be spelled two ways; here the
//! enum, `as_str`, `FromStr`, `Display` and, on request, serde all read the
//! same table. no_std, so the eBPF side can use it for [`crate::EventKind`].

/// A name that is not in an enum's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownName {
    /// The enum's type name, e.g. "Verdict".
    pub what: &'static str,
}

impl core::fmt::Display for UnknownName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "not a known {} name", self.what)
    }
}

/// Defines an enum of unit variants, each with its name:
///
/// ```
/// tracer_common::named_enum! {
///     #[derive(Clone, Copy, Debug, PartialEq, Eq)]
///     pub enum Colour {
///         Red => "red",
///         DarkBlue => "dark-blue",
///     }
/// }
/// assert_eq!(Colour::DarkBlue.as_str(), "dark-blue");
/// assert_eq!("red".parse::<Colour>(), Ok(Colour::Red));
/// assert_eq!(Colour::ALL.len(), 2);
/// ```
///
/// It generates `ALL` (every variant, in order), `NAMES` (their names, same
/// order), `const fn as_str`, `FromStr` and `Display`. Written as
/// `named_enum! { serde ... }` it also implements `Serialize` and
/// `Deserialize` as the name (the calling crate must depend on serde).
/// Variants may carry explicit discriminants: `Foo = 1 => "foo"`. The enum
/// must derive `Clone` and `Copy`.
#[macro_export]
macro_rules! named_enum {
    (
        serde
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident $(= $disc:expr)? => $text:literal ),+ $(,)?
        }
    ) => {
        $crate::named_enum! {
            $(#[$meta])*
            $vis enum $name { $( $(#[$vmeta])* $variant $(= $disc)? => $text ),+ }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::core::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::core::result::Result<Self, D::Error> {
                struct NameVisitor;
                impl ::serde::de::Visitor<'_> for NameVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        write!(f, "one of {:?}", $name::NAMES)
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> ::core::result::Result<$name, E> {
                        v.parse().map_err(|_| E::unknown_variant(v, &$name::NAMES))
                    }
                }
                d.deserialize_str(NameVisitor)
            }
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident $(= $disc:expr)? => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant $(= $disc)? ),+
        }

        // The enum's own visibility decides who sees these.
        #[allow(unreachable_pub)]
        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];
            /// Every variant's name, in the order of [`Self::ALL`].
            pub const NAMES: [&'static str; [$($text),+].len()] = [$($text),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::names::UnknownName;
            fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::names::UnknownName { what: stringify!($name) }),
                }
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                // pad, not write_str: widths like {:<12} must apply.
                f.pad(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::named_enum! {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Sample {
            One = 1 => "one",
            TwoWords = 7 => "two-words",
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for v in Sample::ALL {
            assert_eq!(v.as_str().parse::<Sample>(), Ok(v));
        }
        assert_eq!(Sample::NAMES, ["one", "two-words"]);
        assert_eq!(Sample::TwoWords as u32, 7);
        assert_eq!("TwoWords".parse::<Sample>(), Err(super::UnknownName { what: "Sample" }));
    }
}
