//! EWS source (see issue 4): not built yet.
