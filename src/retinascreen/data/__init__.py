"""Reading photographs and data sets: decoding, fundus crop and quality, layouts, tf.data."""
