"""The scanning engine: loads ClamAV databases and scans bytes; imports only vigil.errors."""
