//! Other names of a key, read as the key itself as each source is read: a source then
//! overrides the ones below it whichever name it uses. Every source is read through here, so
//! this is also where a source that panics becomes an error.

use figment::{
    Error, Metadata, Profile, Provider,
    value::{Dict, Map},
};

use super::KEY_ALIASES;

/// A source whose aliased keys are renamed to the keys they stand for.
pub(super) struct Aliased<P>(pub(super) P);

impl<P: Provider> Provider for Aliased<P> {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        // figment 0.10's parser of environment values panics on some (a quoted value with an
        // escape after a multi-byte character: it cuts the text at a character index taken
        // as a byte index). A bad value is the operator's mistake, to be named, not a crash.
        let Ok(read) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.0.data().map_err(Box::new)
        })) else {
            let name = self.0.metadata().name;
            let message = format!(
                "{name} could not be parsed: check quoted values for escapes (`\\t`) after \
                 non-ASCII text"
            );
            return Err(Error::from(message));
        };
        let mut data = read.map_err(|error| *error)?;
        for dict in data.values_mut() {
            for (alias, key) in KEY_ALIASES {
                let Some(value) = dict.remove(*alias) else {
                    continue;
                };
                if dict.contains_key(*key) {
                    let message = format!("`{alias}` is another name of `{key}`: give one");
                    return Err(Error::from(message).with_path(alias));
                }
                dict.insert((*key).to_owned(), value);
            }
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.0.profile()
    }
}
