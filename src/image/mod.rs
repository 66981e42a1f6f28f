//! Installer images: ISO 9660 reading and boot-menu parsing.
